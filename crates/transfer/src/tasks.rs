//! The tasks that are not downloads to a file: data tasks (a response into memory, bounded)
//! and upload tasks (a file as a request body, streamed, never read whole).
//!
//! Both make the same policy and trust decisions as downloads and use the session's pool. A
//! data task (a GET) that fails on a reused connection before any answer is sent once more on
//! a fresh one, and so is a PUT (idempotent, RFC 9110 §9.2.2: sending it twice does what
//! sending it once does), whose file is read again from its start. A POST always gets a
//! connection of its own, since a pooled one may have died while idle and a POST that may
//! have arrived is never sent again; its connection joins the pool once answered. An upload
//! reports its progress, and fails instead of hanging when the peer stops reading. It follows
//! a redirect that keeps its method (307 and 308; 301 and 302 of a PUT, RFC 9110 §15.4) by
//! sending the file again, whole, to the new URL, under the session's redirect limit and
//! policy, its credentials only to the first origin; after a redirect that would make it a GET
//! (a 303, a 301 or 302 of a POST) the upload is done, and its answer is fetched from there
//! with a GET.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;

use crate::body::Body;
use crate::download::{Event, PROGRESS_EVERY};
use crate::http::{Connection, Response};
use crate::metrics::Metrics;
use crate::sink::{Gather, Pool};
use crate::{Session, TransferError};

/// What an upload reads, and hands the socket, at a time. 64 KiB as curl's upload buffer: with
/// 1 MiB pieces, 1 GiB PUT to nginx on loopback took 0.82 s (median of 5) against curl -T's
/// 0.66 s; with 64 KiB, 0.71 s (the development VM; reading ahead by 16 pieces instead of 4
/// changed nothing).
const CHUNK: usize = 1 << 16;
/// How many chunks an upload reads ahead of the socket.
const READ_AHEAD: usize = 4;
/// The most of an upload's response kept.
pub const UPLOAD_RESPONSE_LIMIT: usize = 1 << 20;

/// A response held in memory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Data {
    /// The URL that answered: the one asked, or where its redirects led.
    pub url: String,
    /// The status code.
    pub status: u16,
    /// The response's headers, in order (values that are not text are left out).
    pub headers: Vec<(String, String)>,
    /// The body, decoded.
    #[serde(skip)]
    pub body: Bytes,
    /// The content coding the body came in (`Content-Encoding`), now undone: `body` is decoded,
    /// and `headers` no longer carry `Content-Encoding` and `Content-Length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded_from: Option<String>,
    /// How it went.
    pub metrics: Metrics,
}

/// A request a data task sends ([`Session::send`]): any method, with a body as URLRequest
/// carries one — bytes in memory (a JSON document, a form), a file, or a stream made as it
/// is sent ([`Body`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method (`GET`, `POST`, `PUT`, `DELETE`, …).
    pub method: hyper::Method,
    /// Where to send it.
    pub url: String,
    /// Request header fields besides the ones the session sets itself (`Host`,
    /// `Content-Length`, …, which cannot be given): `Content-Type` for a body, say.
    /// Credentials among them go only to `url`'s own origin, as a download's.
    pub headers: Vec<(String, String)>,
    /// The body: [`Body::Empty`] for none (a method other than GET, HEAD, DELETE and OPTIONS
    /// says `Content-Length: 0` then), bytes, a file, or a stream (see [`crate::body`]).
    pub body: Body,
    /// For this request alone, the longest wait for a connection, for the answer's head and
    /// for each next bytes of its body (URLRequest's `timeoutInterval`): `None` takes the
    /// session's [`request_timeout`](crate::Configuration::request_timeout). The session's
    /// resource timeout still bounds the whole.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A GET of `url` with no fields.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: hyper::Method::GET,
            url: url.into(),
            headers: Vec::new(),
            body: Body::Empty,
            timeout: None,
        }
    }
}

/// Whether a request with `method` may be sent twice to the same effect (RFC 9110 §9.2.2).
pub fn idempotent(method: &hyper::Method) -> bool {
    use hyper::Method;
    [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS, Method::TRACE]
        .contains(method)
}

/// An upload: the file at `source` as the body of one request to `url`.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Where to send it.
    pub url: String,
    /// The file whose bytes are the body.
    pub source: PathBuf,
    /// PUT or POST.
    pub method: hyper::Method,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// Request header fields to send besides the ones the upload sets itself (`Host`,
    /// `Content-Length`, …, which cannot be given; a `Content-Type` here replaces
    /// `content_type`). Never kept in the store: a queued upload takes none.
    pub headers: Vec<(String, String)>,
}

/// What an upload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// The status code.
    pub status: u16,
    /// Body bytes sent.
    pub sent: u64,
    /// The response's body (its first [`UPLOAD_RESPONSE_LIMIT`] bytes).
    #[serde(skip)]
    pub response: Bytes,
    /// Where the answer came from when the server took the upload and pointed elsewhere for
    /// it (303 See Other, or a 301 or 302 to a POST): that URL, fetched with a GET, whose
    /// status and body these are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// How it went.
    pub metrics: Metrics,
}

impl Session {
    /// GETs `url` into memory: any status is an answer (the caller reads `status`); a body
    /// longer than `limit` bytes is an error, as is anything the transport or policy refuses.
    /// It asks for the content codings of [`crate::decode`] and undoes the one the server
    /// used; the decoded body is held to `limit` too.
    pub async fn data(&self, url: &str, limit: usize) -> Result<Data, TransferError> {
        let accept = [("Accept-Encoding".to_owned(), crate::decode::ACCEPT.to_owned())];
        self.within_resource(async {
            let opened = self.open(url, &accept).await?;
            self.read_data(opened, url, limit, self.config.request_timeout, &mut |_| {}).await
        })
        .await
    }

    /// Sends `request` and reads its answer into memory, as [`data`](Self::data) does (any
    /// status an answer, at most `limit` bytes, content codings undone; `Accept-Encoding` is
    /// added unless the caller gave one). Redirects follow RFC 9110 §15.4: a 307 or 308 sends
    /// the same method and body to the next URL, a 303 (and a 301 or 302 of a POST) makes it
    /// a GET without the body. A request that may be sent twice (GET, HEAD, PUT, DELETE,
    /// OPTIONS) rides the session's pooled connection and goes once more on a new one when
    /// that one was closed meanwhile; any other (POST, PATCH) gets a connection of its own
    /// and is never sent twice — unless the server said it did nothing with it (a GOAWAY
    /// past it, REFUSED_STREAM: RFC 9113 §8.7), which sends any request again, on the shared
    /// connection made next when it was on a shared one. Sending again sends the body whole
    /// from its start (a file read again, a stream made again); a body that can be sent once
    /// ([`Streamed::once`](crate::body::Streamed::once)) keeps the request off pooled
    /// connections, and a request that would need it again fails instead. A file or a stream
    /// fails the request when neither a byte of it goes nor the answer comes for the request
    /// timeout.
    pub async fn send(&self, request: &Request, limit: usize) -> Result<Data, TransferError> {
        self.send_observed(request, limit, &mut |_| {}).await
    }

    /// [`send`](Self::send), telling `on` how much of the request's body has gone (as
    /// [`Event::Sent`]: a file or stream's four times a second while it goes, bytes in memory
    /// once answered) and how much of the answer's body has come (as [`Event::Progress`],
    /// before any content coding is undone, `total` its `Content-Length`) four times a
    /// second, and once at its end.
    pub async fn send_observed(
        &self,
        request: &Request,
        limit: usize,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Data, TransferError> {
        self.within_resource(async {
            let opened = self.open_request(request, on).await?;
            self.read_data(opened, &request.url, limit, self.wait_for(request), on).await
        })
        .await
    }

    /// How long `request` waits for a connection, its answer's head and each next bytes: its
    /// own timeout, else the session's.
    fn wait_for(&self, request: &Request) -> Duration {
        request.timeout.unwrap_or(self.config.request_timeout)
    }

    /// The answer `opened` holds, read into memory under `limit` (waiting at most `idle` for
    /// each next bytes) and decoded, its progress told to `on`.
    async fn read_data(
        &self,
        mut opened: Opened,
        url: &str,
        limit: usize,
        idle: Duration,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Data, TransferError> {
        let first_byte = opened.started.elapsed();
        let body = read_body(&mut opened.response, limit, url, idle, on).await?;
        let (status, mut headers) = (opened.response.status, headers(&opened.response));
        let received = body.len() as u64;
        let coding = opened
            .response
            .header(hyper::header::CONTENT_ENCODING)
            .map(str::to_owned)
            .filter(|c| !c.trim().eq_ignore_ascii_case("identity") && !c.trim().is_empty());
        let body = match &coding {
            None => body,
            // Inflating up to `limit` bytes is CPU work: off the runtime's threads.
            Some(c) => {
                let c = c.clone();
                tokio::task::spawn_blocking(move || crate::decode::decode(&c, body, limit))
                    .await
                    .map_err(|e| TransferError::Http(format!("decoding the body: {e}")))?
                    .map_err(|source| TransferError::Decode { url: url.to_owned(), source })?
            }
        };
        if coding.is_some() {
            headers.retain(|(n, _)| {
                !n.eq_ignore_ascii_case("content-encoding")
                    && !n.eq_ignore_ascii_case("content-length")
            });
        }
        let (url, metrics) = self.close(opened, first_byte, received);
        Ok(Data { url, status, headers, body, decoded_from: coding, metrics })
    }

    /// GETs `url` with the caller's `fields` (credentials only to its own origin, as a
    /// download's) and streams its body into `out` as it comes, bounded in memory: for
    /// `nw get -o -`. A status other than 2xx is an error, and nothing is written then.
    pub async fn data_to(
        &self,
        url: &str,
        fields: &[(String, String)],
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<Data, TransferError> {
        self.within_resource(self.stream_to(url, fields, out)).await
    }

    /// [`data_to`](Self::data_to) with no resource timeout.
    async fn stream_to(
        &self,
        url: &str,
        fields: &[(String, String)],
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<Data, TransferError> {
        use tokio::io::AsyncWriteExt as _;
        let mut opened = self.open(url, fields).await?;
        let status = opened.response.status;
        if !(200..300).contains(&status) {
            return Err(TransferError::status_of(url, &opened.response));
        }
        let first_byte = opened.started.elapsed();
        let idle = self.config.request_timeout;
        let mut sent = 0u64;
        while let Some(piece) = opened.response.body.data_within(idle, sent).await? {
            out.write_all(&piece).await.map_err(TransferError::Output)?;
            sent += piece.len() as u64;
        }
        out.flush().await.map_err(TransferError::Output)?;
        let headers = headers(&opened.response);
        let (url, metrics) = self.close(opened, first_byte, sent);
        Ok(Data { url, status, headers, body: Bytes::new(), decoded_from: None, metrics })
    }

    /// Asks for `url` with `fields`, following redirects (credentials only to the first
    /// origin), up to the response's head.
    #[allow(clippy::disallowed_methods, reason = "a task is timed on the session's clock")]
    async fn open(&self, url: &str, fields: &[(String, String)]) -> Result<Opened, TransferError> {
        let started = Instant::now();
        crate::download::check_fields(fields)?;
        let (mut parsed, security) = self.allowed(url)?;
        let first = crate::origin(&parsed);
        let mut routes = self.routes(&parsed, security).await?;
        let path = crate::pool::path_fingerprint().await;
        let mut chain = crate::redirect::Chain::new(url, self.config.max_redirects);
        let mut conn = self.connection_for(&parsed, &routes, path, 1).await?;
        let mut connected = started.elapsed();
        let mut asked;
        let mut hops = Vec::new();
        let response = loop {
            asked = started.elapsed();
            let fields = crate::download::fields_for(fields, &first, &parsed);
            let response = self.get(&mut conn, &parsed, &fields, &routes, 1).await?;
            self.learn(&parsed, conn.protocol, response.header(hyper::header::ALT_SVC));
            let times = (connected, asked, started.elapsed());
            let hop = crate::metrics::Hop::new(parsed.to_string(), response.status, &conn, times);
            match self.follow(&mut chain, response, conn, &mut parsed, &mut routes, path, 1).await?
            {
                crate::Followed::Hop(next) => {
                    hops.push(hop);
                    conn = next;
                    connected = started.elapsed();
                }
                crate::Followed::Answer(response, same) => {
                    conn = same;
                    break response;
                }
            }
        };
        Ok(Opened { started, parsed, chain, conn, path, connected, asked, response, hops })
    }

    /// Sends `request`, following redirects as [`send`](Self::send) says, up to the
    /// response's head.
    #[allow(clippy::disallowed_methods, reason = "a task is timed on the session's clock")]
    /// Sends `request` (following redirects, refreshing credentials, once more on a fresh
    /// connection when a pooled one failed it) until an answer that is not a redirect; the
    /// body's bytes sent told to `on` as [`Event::Sent`].
    async fn open_request(
        &self,
        request: &Request,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Opened, TransferError> {
        let started = Instant::now();
        crate::download::check_fields(&request.headers)?;
        let (mut parsed, security) = self.allowed(&request.url)?;
        let first = crate::origin(&parsed);
        let wait = self.wait_for(request);
        let mut routes = self.routes(&parsed, security).await?;
        routes.timeout(wait);
        let path = crate::pool::path_fingerprint().await;
        let mut chain = crate::redirect::Chain::new(&request.url, self.config.max_redirects);
        let (mut method, mut body) = (request.method.clone(), request.body.clone());
        let mut fields = request.headers.clone();
        if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("accept-encoding")) {
            fields.push(("Accept-Encoding".to_owned(), crate::decode::ACCEPT.to_owned()));
        }
        // Whether the connection may be a pooled one: then a request it fails goes again,
        // once, on a new one.
        let mut pooled = idempotent(&method) && body.repeatable();
        let mut conn = self.connection(&parsed, &routes, path, pooled).await?;
        let mut again = crate::Again::default();
        // Why the request is being sent again, when it is.
        let mut resent: Option<String> = None;
        let mut connected = started.elapsed();
        let mut hops = Vec::new();
        // A 401 to the credential provider's answer gets its fresh one, once per URL.
        let mut refreshed = false;
        loop {
            let asked = started.elapsed();
            let mut headers = crate::download::fields_for(&fields, &first, &parsed);
            let bodiless = [hyper::Method::GET, hyper::Method::HEAD, hyper::Method::DELETE]
                .contains(&method)
                || method == hyper::Method::OPTIONS;
            let url = parsed.to_string();
            let sending = body.sending(&url, resent.as_deref()).await?;
            match sending.length {
                Some(n) if n > 0 || !bodiless => headers.push(("content-length", n.to_string())),
                _ => {}
            }
            let sent_auth = self.with_authorization(&parsed, &mut headers).await;
            self.with_cookies(&parsed, &mut headers);
            let answered = match sending.streamed {
                None => {
                    let length = sending.length.filter(|n| *n > 0);
                    let answered = conn
                        .request_within(method.clone(), &parsed, &headers, sending.body, wait)
                        .await;
                    // Bytes in memory went whole once the answer came.
                    if let (Some(n), Ok(_)) = (length, &answered) {
                        on(Event::Sent { sent: n, total: Some(n) });
                    }
                    answered
                }
                // A body read as it goes: failing when neither a byte of it goes nor the
                // answer comes for the request timeout (a peer that stopped reading).
                Some(progress) => {
                    let request = conn.request(method.clone(), &parsed, &headers, sending.body);
                    let length = sending.length;
                    let mut sent = |e: Event| {
                        if let Event::Progress { written, total, .. } = e {
                            on(Event::Sent { sent: written, total });
                        }
                    };
                    let watched = watch(request, &progress.sent, length, wait, &mut sent).await;
                    if let Some(e) = progress.failure() {
                        return Err(TransferError::Body { url, why: format!("failed: {e}") });
                    }
                    watched
                }
            };
            // A pooled connection the server closed while it idled, or a request the server
            // refused without doing anything with it: once more on another connection.
            if again.goes_again(&answered, &conn, pooled) {
                let e = answered.err().map(|e| e.to_string()).unwrap_or_default();
                tracing::debug!("{parsed}: {e}; once more on another connection");
                resent = Some(format!("it failed before any answer: {e}"));
                conn = self.replacement(&parsed, &conn, &routes, 1, pooled).await?;
                connected = started.elapsed();
                continue;
            }
            let response = answered?;
            self.jar.learn(&parsed, &response.headers).await;
            self.learn(&parsed, conn.protocol, response.header(hyper::header::ALT_SVC));
            // Refused what the credential provider gave: its fresh answer, once (a 401 was
            // not acted on, so even a POST goes again), on this connection when it can carry
            // it.
            if !refreshed
                && self.fresh_credentials(&parsed, &response, sent_auth.as_deref()).await.is_some()
            {
                refreshed = true;
                resent = Some("the server refused the credentials, and they were refreshed".into());
                if conn.protocol == crate::http::Protocol::Http11 && !crate::drained(response).await
                {
                    conn = self.connect(&parsed, &routes, 1).await?;
                    connected = started.elapsed();
                }
                continue;
            }
            let Some((next, security, next_method)) =
                self.redirected(&mut chain, &response, &method)?
            else {
                return Ok(Opened {
                    started,
                    parsed,
                    chain,
                    conn,
                    path,
                    connected,
                    asked,
                    response,
                    hops,
                });
            };
            resent = Some(format!("{parsed} answered {} to it", response.status));
            let times = (connected, asked, started.elapsed());
            hops.push(crate::metrics::Hop::new(parsed.to_string(), response.status, &conn, times));
            // Made a GET, the request leaves its body (and its type) behind.
            if next_method != method {
                body = Body::Empty;
                fields.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            }
            method = next_method;
            refreshed = false;
            again = crate::Again::default();
            self.hand_back(&parsed, conn, response, path).await;
            routes = self.routes(&next, security).await?;
            routes.timeout(wait);
            parsed = next;
            pooled = idempotent(&method) && body.repeatable();
            conn = self.connection(&parsed, &routes, path, pooled).await?;
            connected = started.elapsed();
        }
    }

    /// Puts an answered request's connection back in the pool; the URL that answered and the
    /// transaction's metrics.
    #[allow(clippy::disallowed_methods, reason = "a task is timed on the session's clock")]
    fn close(&self, opened: Opened, first_byte: Duration, bytes: u64) -> (String, Metrics) {
        let mut metrics = Metrics::new(
            &opened.conn,
            opened.connected,
            opened.asked,
            first_byte,
            opened.started.elapsed().saturating_sub(first_byte),
            bytes,
            0,
        );
        metrics.redirects = opened.hops;
        self.pool.put(crate::origin(&opened.parsed), opened.conn, opened.path, Instant::now());
        (opened.chain.asked().last().cloned().unwrap_or_default(), metrics)
    }

    /// Sends the file `job.source` to `job.url` as the body of a PUT or POST, with its length
    /// in `Content-Length`. A status other than 2xx is an error.
    pub async fn upload(&self, job: &Upload) -> Result<Uploaded, TransferError> {
        self.upload_observed(job, &mut |_| {}).await
    }

    /// [`upload`](Self::upload), telling `on` how much of the body has gone (as
    /// [`Event::Progress`], `written` counting bytes sent) four times a second. When neither a
    /// body byte goes nor the answer comes for the request timeout (a peer that stopped
    /// reading), the upload fails instead of hanging.
    pub async fn upload_observed(
        &self,
        job: &Upload,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Uploaded, TransferError> {
        self.within_resource(self.send_upload(job, on)).await
    }

    /// [`upload_observed`](Self::upload_observed) with no resource timeout.
    #[allow(clippy::disallowed_methods, reason = "a task is timed on the session's clock")]
    async fn send_upload(
        &self,
        job: &Upload,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Uploaded, TransferError> {
        let started = Instant::now();
        crate::download::check_fields(&job.headers)?;
        let (mut parsed, mut security) = self.allowed(&job.url)?;
        let first = crate::origin(&parsed);
        let mut chain = crate::redirect::Chain::new(&job.url, self.config.max_redirects);
        let mut current = job.url.clone();
        // A 401 to the credential provider's answer gets its fresh one, once per URL.
        let mut refreshed = false;
        // A PUT takes a pooled connection, and once (when that one turns out dead) a new one.
        let mut pooled = job.method == hyper::Method::PUT;
        // The redirects answered on the way, for the metrics.
        let mut hops = Vec::new();
        let path = crate::pool::path_fingerprint().await;
        // Each hop of a redirect that keeps the method (307, 308; 301 and 302 of a PUT) sends
        // the file again, whole, to the next URL.
        loop {
            let routes = self.routes(&parsed, security).await?;
            // Never waiting on a named pipe nothing writes to, and only a regular file: its
            // length is the body's. Opened on a blocking thread (a slow disk, a network file
            // system), as it is then read.
            let source = job.source.clone();
            let (file, meta) =
                tokio::task::spawn_blocking(move || nw_trust::files::open_regular(&source, true))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(|e| TransferError::io(&job.source, "cannot open it to upload", e))?;
            let len = meta.len();
            let mut conn: Connection = self.connection(&parsed, &routes, path, pooled).await?;
            let connected = started.elapsed();
            let sent = Arc::new(AtomicU64::new(0));
            // A read error is kept here as well as handed to the HTTP stack, which may report only
            // that the body failed (hyper's HTTP/2 resets the stream and says "internal error").
            let unread = Arc::new(Mutex::new(None::<std::io::Error>));
            let (counter, kept) = (sent.clone(), unread.clone());
            let pieces = futures_util::stream::unfold(read_ahead(file, len), move |mut rx| {
                let (counter, kept) = (counter.clone(), kept.clone());
                async move {
                    let frame = match rx.recv().await? {
                        // Counted as it is handed over: the stack writes a piece before asking
                        // for the next, so this runs at most one piece ahead of the socket.
                        Ok(piece) => {
                            counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
                            Ok(Frame::data(piece))
                        }
                        Err(e) => {
                            let told = std::io::Error::new(e.kind(), e.to_string());
                            *kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                            Err(told)
                        }
                    };
                    Some((frame, rx))
                }
            });
            let given = |name: &str| job.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            let mut headers: Vec<(&str, String)> = vec![("content-length", len.to_string())];
            if !given("content-type") {
                headers.push(("content-type", job.content_type.clone()));
            }
            // Credentials only to the first URL's origin, as a download's.
            headers.extend(crate::download::fields_for(&job.headers, &first, &parsed));
            let sent_auth = self.with_authorization(&parsed, &mut headers).await;
            self.with_cookies(&parsed, &mut headers);
            let asked = started.elapsed();
            let body = StreamBody::new(pieces).boxed();
            let request = conn.request(job.method.clone(), &parsed, &headers, Some(body));
            let watched = watch(request, &sent, Some(len), self.config.request_timeout, on).await;
            let unread = unread.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(e) = unread {
                return Err(TransferError::io(&job.source, "cannot read it to upload", e));
            }
            let mut response = match watched {
                // A pooled connection the server closed while it idled fails before any
                // answer: the PUT goes again, whole, on a new one (once).
                Err(e) if pooled && conn.reused => {
                    tracing::debug!("{current}: {e}; the PUT once more on another connection");
                    self.set_aside(&parsed, &conn);
                    pooled = false;
                    continue;
                }
                r => r?,
            };
            let first_byte = started.elapsed();
            self.jar.learn(&parsed, &response.headers).await;
            if !refreshed
                && self.fresh_credentials(&parsed, &response, sent_auth.as_deref()).await.is_some()
            {
                refreshed = true;
                continue;
            }
            let mut answered_at = None;
            match self.redirected(&mut chain, &response, &job.method)? {
                Some((next, sec, method)) if method == job.method => {
                    let times = (connected, asked, first_byte);
                    let asked_url = std::mem::take(&mut current);
                    hops.push(crate::metrics::Hop::new(asked_url, response.status, &conn, times));
                    refreshed = false;
                    current = next.to_string();
                    (parsed, security) = (next, sec);
                    continue;
                }
                // The upload was taken; its answer is elsewhere, to GET: with the caller's
                // credentials only on the first origin, as every hop, and without the
                // upload's own Content-Type. Failing to get it does not send the file again.
                Some((next, _, _)) => {
                    drop(response);
                    current = next.to_string();
                    let fields: Vec<(String, String)> =
                        crate::download::fields_for(&job.headers, &first, &next)
                            .into_iter()
                            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
                            .map(|(n, v)| (n.to_owned(), v))
                            .collect();
                    let opened = self.open(&current, &fields).await.map_err(|e| {
                        TransferError::AnswerElsewhere { at: current.clone(), source: Box::new(e) }
                    })?;
                    current = opened.chain.asked().last().cloned().unwrap_or(current);
                    response = opened.response;
                    answered_at = Some(current.clone());
                }
                None => {}
            }
            let fail = |e: TransferError| match &answered_at {
                Some(at) => TransferError::AnswerElsewhere { at: at.clone(), source: Box::new(e) },
                None => e,
            };
            if !(200..300).contains(&response.status) {
                return Err(fail(TransferError::status_of(&current, &response)));
            }
            let idle = self.config.request_timeout;
            let answer =
                read_body(&mut response, UPLOAD_RESPONSE_LIMIT, &current, idle, &mut |_| {})
                    .await
                    .map_err(fail)?;
            let mut metrics = Metrics::new(
                &conn,
                connected,
                asked,
                first_byte,
                first_byte.saturating_sub(asked),
                answer.len() as u64,
                0,
            );
            metrics.redirects = std::mem::take(&mut hops);
            // Its answer read to the end, the connection serves the session's next requests
            // (not when the answer came from elsewhere: this one's was left unread).
            if answered_at.is_none() {
                self.pool.put(crate::origin(&parsed), conn, path, Instant::now());
            }
            return Ok(Uploaded {
                status: response.status,
                sent: len,
                response: answer,
                answered_at,
                metrics,
            });
        }
    }
}

/// Reads `len` bytes of `file` on a blocking thread, ahead of the socket by up to
/// [`READ_AHEAD`] chunks, into buffers that are reused once the socket has taken them (a fresh
/// buffer per chunk costs page faults and zeroing; measured on the development VM, reading
/// through `tokio::fs` into fresh buffers cost `nw put` half as much CPU again as `curl -T`).
/// A file that ends before `len` (it shrank since the upload began) ends the stream with an
/// error rather than a body shorter than its `Content-Length`.
pub(crate) fn read_ahead(
    file: std::fs::File,
    len: u64,
) -> tokio::sync::mpsc::Receiver<std::io::Result<Bytes>> {
    use std::io::Read as _;
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut gather = Gather::new(Pool::new(CHUNK), 0);
        let mut file = file.take(len);
        let mut read = 0u64;
        loop {
            match file.read(gather.room()) {
                Ok(0) => break,
                Ok(n) => {
                    read += n as u64;
                    if let Some(chunk) = gather.filled(n)
                        && tx.blocking_send(Ok(chunk)).is_err()
                    {
                        return; // the upload ended without the rest
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if let Some(last) = gather.close()
            && tx.blocking_send(Ok(last)).is_err()
        {
            return;
        }
        if read < len {
            let e = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("it ended after {read} of its {len} bytes; was it changed mid-upload?"),
            );
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Awaits `request`, reporting the bytes `sent` of `len` every [`PROGRESS_EVERY`], and failing
/// once nothing has moved for `idle`.
#[allow(clippy::disallowed_methods, reason = "progress rates and the idle limit read the clock")]
async fn watch<T>(
    request: impl Future<Output = Result<T, TransferError>>,
    sent: &AtomicU64,
    len: Option<u64>,
    idle: Duration,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<T, TransferError> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    let (mut last, mut moved) = (0, Instant::now());
    let progress = |n: u64| Event::Progress {
        written: n,
        received: n,
        total: len,
        rate: n as f64 / started.elapsed().as_secs_f64().max(1e-3),
    };
    let mut request = std::pin::pin!(request);
    loop {
        tokio::select! {
            result = &mut request => {
                on(progress(sent.load(Ordering::Relaxed)));
                return result;
            }
            _ = tick.tick() => {
                let now = sent.load(Ordering::Relaxed);
                if now != last {
                    (last, moved) = (now, Instant::now());
                } else if moved.elapsed() >= idle {
                    let of = len.map(|l| format!(" of {l}")).unwrap_or_default();
                    return Err(TransferError::Timeout(format!(
                        "the upload made no progress for {} s ({now}{of} bytes sent, no answer)",
                        idle.as_secs(),
                    )));
                }
                on(progress(now));
            }
        }
    }
}

/// The body of `response`, refusing one over `limit` bytes, and failing when no byte of it
/// comes for `idle`; its progress told to `on` at its first piece, then every
/// [`PROGRESS_EVERY`], and at its end.
#[allow(clippy::disallowed_methods, reason = "progress rates read the clock")]
async fn read_body(
    response: &mut Response,
    limit: usize,
    url: &str,
    idle: Duration,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Bytes, TransferError> {
    let total = response.header(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let started = Instant::now();
    // The first piece is told at once, then one every PROGRESS_EVERY.
    let mut told: Option<Instant> = None;
    let progress = |n: usize| Event::Progress {
        written: n as u64,
        received: n as u64,
        total,
        rate: n as f64 / started.elapsed().as_secs_f64().max(1e-3),
    };
    let mut body = BytesMut::new();
    while let Some(piece) = response.body.data_within(idle, body.len() as u64).await? {
        if body.len() + piece.len() > limit {
            return Err(TransferError::TooLong { url: url.to_owned(), limit });
        }
        body.extend_from_slice(&piece);
        if told.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            told = Some(Instant::now());
            on(progress(body.len()));
        }
    }
    on(progress(body.len()));
    Ok(body.freeze())
}

/// A request answered up to its head, with what its metrics need.
struct Opened {
    started: Instant,
    parsed: nw_connection::Url,
    chain: crate::redirect::Chain,
    conn: Connection,
    path: Option<u64>,
    connected: Duration,
    asked: Duration,
    response: Response,
    /// The redirects answered on the way.
    hops: Vec<crate::metrics::Hop>,
}

fn headers(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `read_ahead` hands over, in order.
    async fn drain(file: &std::path::Path, len: u64) -> Vec<std::io::Result<Bytes>> {
        let mut rx = read_ahead(std::fs::File::open(file).unwrap(), len);
        let mut got = Vec::new();
        while let Some(piece) = rx.recv().await {
            got.push(piece);
        }
        got
    }

    #[tokio::test]
    async fn an_upload_is_read_ahead_in_whole_chunks_and_a_shrunk_file_says_so() {
        let dir = nw_lab::Scratch::new("read-ahead").unwrap();
        let path = dir.path().join("up.bin");
        let data: Vec<u8> = (0..CHUNK * 7 / 2).map(|i| u8::try_from(i % 251).unwrap()).collect();
        std::fs::write(&path, &data).unwrap();

        let got = drain(&path, data.len() as u64).await;
        let pieces: Vec<Bytes> = got.into_iter().map(Result::unwrap).collect();
        let sizes: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, CHUNK, CHUNK / 2]);
        assert!(pieces.concat() == data, "every byte, in order");

        // Only the length the upload announced goes, even when the file grew since.
        let got = drain(&path, 1000).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap()[..], data[..1000]);

        // A file shorter than announced ends in an error, after what it had.
        let got = drain(&path, data.len() as u64 + 10).await;
        let (last, before) = got.split_last().unwrap();
        assert_eq!(before.iter().map(|p| p.as_ref().unwrap().len()).sum::<usize>(), data.len());
        let e = last.as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("changed mid-upload"), "{e}");
    }
}
