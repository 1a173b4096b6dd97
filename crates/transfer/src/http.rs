//! One HTTP connection: established by nw-connection (the Happy Eyeballs race, TLS through the
//! trust seam), then HTTP/2 over hyper when ALPN chose `h2` and HTTP/1.1 ([`crate::h1`], which
//! reads bodies straight into the caller's buffers) otherwise; or HTTP/3 over quinn and h3,
//! raced against TCP so that a network that drops UDP costs a head start, never a hang.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use nw_connection::Url;
use nw_connection::{Parameters, Report, Resolve};

use crate::TransferError;

/// HTTP/2 flow-control windows: large enough that a loopback or long fat path is not
/// window-limited (hyper's default stream window is 64 KiB). A download in N segments gives
/// each connection 1/N of them, so what the peers may have in flight stays the same.
pub(crate) const H2_STREAM_WINDOW: u32 = 16 << 20;
pub(crate) const H2_CONNECTION_WINDOW: u32 = 32 << 20;

/// The negotiated HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/3.
    #[serde(rename = "h3")]
    H3,
}

impl Protocol {
    /// Its ALPN name, as shown and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http11 => "http/1.1",
            Self::H2 => "h2",
            Self::H3 => "h3",
        }
    }
}

/// How long HTTP/3 runs alone before TCP joins the race. A QUIC handshake on a working path
/// takes one round trip; this is generous for that while keeping a path that drops UDP from
/// costing more than a fraction of a second.
pub(crate) const H3_HEAD_START: Duration = Duration::from_millis(300);

/// A request body: what an upload sends (empty for a GET).
pub(crate) type RequestBody = BoxBody<Bytes, std::io::Error>;

/// What every request says it comes from.
pub(crate) const USER_AGENT: &str = concat!("nw/", env!("CARGO_PKG_VERSION"));

/// A request that went wrong before its answer's head was read.
pub(crate) fn failed(e: &dyn std::fmt::Display) -> TransferError {
    TransferError::Http(format!("request failed: {e}"))
}

/// An error with its sources, "a: b: c": hyper's own text leaves the cause out ("connection
/// error", without the reset or the refusal that ended the connection). (A failed upload body
/// is not among these: hyper's HTTP/2 resets the stream and drops the body's error, so the
/// upload keeps it itself.)
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// Whether the server did not process the request, so that sending it again anywhere is
/// safe (RFC 9113 §8.7): its stream was refused (REFUSED_STREAM), or the connection went away
/// with NO_ERROR past it (a GOAWAY names the last stream processed; h2 fails the ones after).
fn unprocessed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = s.source();
    }
    false
}

/// An empty request body.
pub(crate) fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

enum Sender {
    H1(crate::h1::Connection),
    H2(http2::SendRequest<RequestBody>),
    H3(h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>),
}

/// An established HTTP connection.
pub(crate) struct Connection {
    sender: Sender,
    pub(crate) protocol: Protocol,
    pub(crate) report: Report,
    /// Why HTTP/3 was tried and not used (it failed, or TCP was ready first).
    pub(crate) h3_fallback: Option<String>,
    /// It carried an earlier request (it came from the pool).
    pub(crate) reused: bool,
    /// A QUIC connection and its endpoint, which must outlive it.
    quic: Option<(quinn::Connection, quinn::Endpoint)>,
    /// The QUIC connection's qlog (`QLOGDIR`), which gets the HTTP/3 events.
    qlog: Option<nw_connection::Qlog>,
    /// The connection is to an HTTP proxy that forwards plain-HTTP requests: they go in the
    /// absolute form, with this `Proxy-Authorization` when there is one.
    forward: Option<Option<String>>,
    /// Answers it brought over HTTP/2, counted across its handles: a server that closes it
    /// having answered some makes progress, one that never answers does not.
    answered: Arc<std::sync::atomic::AtomicU64>,
}

impl crate::pool::Pooled for Connection {
    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(c) => c.is_closed(),
            Sender::H2(s) => s.is_closed(),
            Sender::H3(_) => self.quic.as_ref().is_none_or(|(c, _)| c.close_reason().is_some()),
        }
    }

    fn reuse(&mut self) {
        self.reused = true;
    }

    fn share(&self) -> Option<Self> {
        self.multiplexed()
    }

    fn id(&self) -> u64 {
        // nw-connection's id (`C7`): one per connection made in this process, which every
        // handle on a shared connection carries in its report.
        u64::from(self.report.connection.0)
    }
}

/// Where and how HTTP/3 is tried.
#[derive(Debug, Clone)]
pub(crate) struct H3Route {
    /// Parameters whose TLS offers ALPN `h3`.
    pub(crate) params: Parameters,
    /// The UDP port.
    pub(crate) port: u16,
    /// No TCP fallback.
    pub(crate) only: bool,
}

/// A response head and its body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Body,
}

impl Response {
    pub(crate) fn header(&self, name: hyper::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response body, whichever HTTP version carries it.
pub(crate) struct Body {
    kind: Kind,
    /// What [`read_within`](Self::read_within) took of the last piece and did not use.
    rest: Bytes,
}

enum Kind {
    H1(Box<crate::h1::Body>),
    Hyper(Incoming),
    H3(Box<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>>),
}

impl Body {
    fn new(kind: Kind) -> Self {
        Self { kind, rest: Bytes::new() }
    }

    /// The next bytes of the body; `None` at its end.
    pub(crate) async fn data(&mut self) -> Option<Result<Bytes, TransferError>> {
        if !self.rest.is_empty() {
            return Some(Ok(std::mem::take(&mut self.rest)));
        }
        match &mut self.kind {
            Kind::H1(body) => body.data().await,
            Kind::Hyper(body) => loop {
                match body.frame().await? {
                    Err(e) => return Some(Err(TransferError::Lost(e.to_string()))),
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            return Some(Ok(data));
                        }
                    }
                }
            },
            Kind::H3(stream) => match stream.recv_data().await {
                Ok(None) => None,
                Ok(Some(mut buf)) => Some(Ok(buf.copy_to_bytes(buf.remaining()))),
                Err(e) => Some(Err(TransferError::Lost(e.to_string()))),
            },
        }
    }

    /// [`data`](Self::data) as a transfer's reader wants it: `None` at the end, a lost
    /// connection as [`TransferError::Lost`], and a timeout when nothing comes for `idle`
    /// (`got`: the bytes of this body read so far, for the message).
    pub(crate) async fn data_within(
        &mut self,
        idle: Duration,
        got: u64,
    ) -> Result<Option<Bytes>, TransferError> {
        match tokio::time::timeout(idle, self.data()).await {
            Err(_) => Err(stalled(idle, got)),
            Ok(next) => next.transpose(),
        }
    }

    /// Fills the front of `out` with the next bytes of the body, as [`data_within`]
    /// (Self::data_within) would give them; 0 at its end. Over HTTP/1.1 they come straight
    /// from the connection; other versions deliver pieces, which are copied.
    pub(crate) async fn read_within(
        &mut self,
        idle: Duration,
        got: u64,
        mut out: &mut [u8],
    ) -> Result<usize, TransferError> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.rest.is_empty() {
            if let Kind::H1(body) = &mut self.kind {
                return match tokio::time::timeout(idle, body.read(&mut out)).await {
                    Err(_) => Err(stalled(idle, got)),
                    Ok(read) => read,
                };
            }
            match self.data_within(idle, got).await? {
                Some(piece) => self.rest = piece,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.rest.len());
        out[..n].copy_from_slice(&self.rest.split_to(n));
        Ok(n)
    }
}

fn stalled(idle: Duration, got: u64) -> TransferError {
    TransferError::Timeout(format!(
        "no data for {} s after {got} bytes of the answer",
        idle.as_secs()
    ))
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

/// Connects to `url`'s host and speaks HTTP over it: over TCP with `tcp`, or, given an HTTP/3
/// route, over QUIC first with TCP joining after [`H3_HEAD_START`] (at once when QUIC fails).
/// The first connection ready wins; the other is dropped.
#[allow(clippy::disallowed_methods, reason = "the connection driver times the head start")]
pub(crate) async fn connect(
    url: &Url,
    tcp: &Parameters,
    h3: Option<&H3Route>,
    resolver: Arc<dyn Resolve>,
    share: u32,
) -> Result<Connection, TransferError> {
    let Some(h3) = h3 else { return connect_tcp(url, tcp, resolver, share).await };
    let quic = connect_h3(url, h3, resolver.clone());
    if h3.only {
        return quic.await;
    }
    tokio::pin!(quic);
    let failed = tokio::select! {
        r = &mut quic => match r {
            Ok(c) => return Ok(c),
            Err(e) => Some(e),
        },
        () = tokio::time::sleep(H3_HEAD_START) => None,
    };
    let fallback = |mut c: Connection, why: String| {
        tracing::debug!("{}: {why}", url.host);
        c.h3_fallback = Some(why);
        c
    };
    let tcp = connect_tcp(url, tcp, resolver, share);
    if let Some(e) = failed {
        return Ok(fallback(tcp.await?, format!("HTTP/3 failed: {e}")));
    }
    tokio::pin!(tcp);
    tokio::select! {
        r = &mut quic => match r {
            Ok(c) => Ok(c),
            Err(e) => Ok(fallback(tcp.await?, format!("HTTP/3 failed: {e}"))),
        },
        r = &mut tcp => match r {
            Ok(c) => Ok(fallback(c, format!(
                "HTTP/3 was not ready within {} ms; TCP was ready first",
                H3_HEAD_START.as_millis()
            ))),
            // TCP failed too: HTTP/3 is the last chance.
            Err(tcp_error) => quic.await.map_err(|_| tcp_error),
        },
    }
}

/// HTTP/3 on a QUIC connection to `url`'s host at the route's port.
async fn connect_h3(
    url: &Url,
    route: &H3Route,
    resolver: Arc<dyn Resolve>,
) -> Result<Connection, TransferError> {
    let connected = nw_connection::connect_quic(&url.host, route.port, &route.params, resolver)
        .await
        .map_err(|e| TransferError::Connect(Box::new(e)))?;
    let quic = connected.quic;
    let (mut conn, sender) = h3::client::new(h3_quinn::Connection::new(quic.connection.clone()))
        .await
        .map_err(|e| TransferError::Http(format!("HTTP/3 handshake: {e}")))?;
    tokio::spawn(async move {
        let e = std::future::poll_fn(|cx| conn.poll_close(cx)).await;
        tracing::debug!("HTTP/3 connection ended: {e}");
    });
    Ok(Connection {
        sender: Sender::H3(sender),
        protocol: Protocol::H3,
        report: connected.report,
        h3_fallback: None,
        reused: false,
        quic: Some((quic.connection, quic.endpoint)),
        qlog: quic.qlog,
        forward: None,
        answered: Arc::default(),
    })
}

/// HTTP/2 or HTTP/1.1 over TCP (and TLS when `params` has it).
async fn connect_tcp(
    url: &Url,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    share: u32,
) -> Result<Connection, TransferError> {
    // Plain HTTP through an HTTP proxy: the requests go to the proxy itself (RFC 9112 §3.2.2's
    // absolute form), no tunnel.
    let forward = params.proxy.as_ref().filter(|p| url.scheme == "http" && p.kind.is_http());
    let connected = match forward {
        None => nw_connection::connect(&url.host, url.port, params, resolver).await,
        Some(proxy) => {
            nw_connection::connect_proxy(proxy, &url.host, url.port, params, resolver).await
        }
    };
    let connected = connected.map_err(|e| TransferError::Connect(Box::new(e)))?;
    let forward =
        forward.map(|p| p.credentials.as_ref().map(nw_connection::proxy::Credentials::basic));
    let report = connected.report;
    let h2 = report.tls.as_ref().and_then(|t| t.alpn.as_deref()) == Some("h2");
    let handshake_error = |e: hyper::Error| TransferError::Http(format!("HTTP handshake: {e}"));
    let (sender, protocol) = if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW / share.max(1))
            .initial_connection_window_size(H2_CONNECTION_WINDOW / share.max(1))
            .keep_alive_interval(Duration::from_secs(20))
            .handshake(TokioIo::new(connected.stream))
            .await
            .map_err(handshake_error)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        (Sender::H2(sender), Protocol::H2)
    } else {
        (Sender::H1(crate::h1::Connection::new(connected.stream)), Protocol::Http11)
    };
    Ok(Connection {
        sender,
        protocol,
        report,
        h3_fallback: None,
        reused: false,
        quic: None,
        qlog: None,
        forward,
        answered: Arc::default(),
    })
}

impl Connection {
    /// It has brought answers over HTTP/2 (on any of its handles).
    pub(crate) fn answered(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Another handle on this connection for requests alongside the current ones, where the
    /// protocol multiplexes (HTTP/2, HTTP/3); `None` for HTTP/1.1.
    pub(crate) fn multiplexed(&self) -> Option<Self> {
        let sender = match &self.sender {
            Sender::H1(_) => return None,
            Sender::H2(s) => Sender::H2(s.clone()),
            Sender::H3(s) => Sender::H3(s.clone()),
        };
        Some(Self {
            sender,
            protocol: self.protocol,
            report: self.report.clone(),
            // Why HTTP/3 was not used is the story of the request that made the connection.
            h3_fallback: None,
            reused: true,
            quic: self.quic.clone(),
            qlog: self.qlog.clone(),
            forward: self.forward.clone(),
            answered: self.answered.clone(),
        })
    }

    /// Sends a GET for `url` with `headers`.
    pub(crate) async fn get(
        &mut self,
        url: &Url,
        headers: &[(&str, String)],
    ) -> Result<Response, TransferError> {
        self.request(hyper::Method::GET, url, headers, None).await
    }

    /// [`get`](Self::get), failing with [`TransferError::Timeout`] when the response's head has
    /// not come within `wait` of sending: a server that accepts and never answers must not
    /// hold a transfer forever.
    pub(crate) async fn get_within(
        &mut self,
        url: &Url,
        headers: &[(&str, String)],
        wait: Duration,
    ) -> Result<Response, TransferError> {
        self.request_within(hyper::Method::GET, url, headers, None, wait).await
    }

    /// [`request`](Self::request), failing as [`get_within`](Self::get_within) does when the
    /// response's head has not come within `wait`.
    pub(crate) async fn request_within(
        &mut self,
        method: hyper::Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<RequestBody>,
        wait: Duration,
    ) -> Result<Response, TransferError> {
        match tokio::time::timeout(wait, self.request(method, url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(TransferError::Timeout(format!(
                "no response within {} s of asking",
                wait.as_secs_f64()
            ))),
        }
    }

    /// Sends `method` for `url` with `headers` and, when given, `body`.
    pub(crate) async fn request(
        &mut self,
        method: hyper::Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<RequestBody>,
    ) -> Result<Response, TransferError> {
        let authority = url.authority();
        // HTTP/2 and HTTP/3 send the absolute form (turned into :scheme, :authority, :path).
        let hyper_request = || {
            let uri = url.to_string();
            let mut request = hyper::Request::builder().method(method.clone()).uri(uri.as_str());
            request = request.header(hyper::header::USER_AGENT, USER_AGENT);
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            request
        };
        let formed = |e: hyper::http::Error| {
            TransferError::Http(format!("{}: cannot form a request for it: {e}", url.path))
        };
        let response = match &mut self.sender {
            Sender::H1(c) => {
                // The origin form, with a Host field; to a forwarding proxy, the absolute form.
                let (target, with_proxy);
                let (target, headers) = match &self.forward {
                    None => (url.path.as_str(), headers),
                    Some(authorization) => {
                        target = url.to_string();
                        let mut all = headers.to_vec();
                        if let Some(value) = authorization {
                            all.push(("Proxy-Authorization", value.clone()));
                        }
                        with_proxy = all;
                        (target.as_str(), with_proxy.as_slice())
                    }
                };
                let request = crate::h1::Request {
                    method: &method,
                    target,
                    authority: &authority,
                    headers,
                    body,
                };
                let answer = c.send(request).await?;
                return Ok(Response {
                    status: answer.status,
                    headers: answer.headers,
                    body: Body::new(Kind::H1(Box::new(answer.body))),
                });
            }
            Sender::H2(s) => {
                let request = hyper_request();
                let body = body.unwrap_or_else(empty);
                s.send_request(request.body(body).map_err(formed)?).await
            }
            Sender::H3(s) => {
                let request = hyper_request().body(()).map_err(formed)?;
                let sent = qlog_headers(&request);
                let mut stream = s.send_request(request).await.map_err(|e| failed(&e))?;
                // A client-initiated bidirectional stream's ID is 4 × its index (RFC 9000 §2.1).
                let stream_id = stream.id().index() * 4;
                if let Some(qlog) = &self.qlog {
                    let frame = serde_json::json!({ "frame_type": "headers", "headers": sent });
                    let data = serde_json::json!({ "stream_id": stream_id, "frame": frame });
                    qlog.event("http3:frame_created", data);
                }
                if let Some(mut body) = body {
                    while let Some(frame) = body.frame().await {
                        let frame = frame.map_err(|e| failed(&e))?;
                        if let Ok(data) = frame.into_data() {
                            stream.send_data(data).await.map_err(|e| failed(&e))?;
                        }
                    }
                }
                stream.finish().await.map_err(|e| failed(&e))?;
                let head = stream.recv_response().await.map_err(|e| failed(&e))?;
                if let Some(qlog) = &self.qlog {
                    let mut headers = vec![serde_json::json!({
                        "name": ":status",
                        "value": head.status().as_str(),
                    })];
                    headers.extend(qlog_fields(head.headers()));
                    let frame = serde_json::json!({ "frame_type": "headers", "headers": headers });
                    let data = serde_json::json!({ "stream_id": stream_id, "frame": frame });
                    qlog.event("http3:frame_parsed", data);
                }
                let (head, ()) = head.into_parts();
                return Ok(Response {
                    status: head.status.as_u16(),
                    headers: head.headers,
                    body: Body::new(Kind::H3(Box::new(stream))),
                });
            }
        };
        let (head, body) = response
            .map_err(|e| {
                if unprocessed(&e) {
                    TransferError::Unprocessed(with_sources(&e))
                } else {
                    failed(&with_sources(&e))
                }
            })?
            .into_parts();
        self.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Response {
            status: head.status.as_u16(),
            headers: head.headers,
            body: Body::new(Kind::Hyper(body)),
        })
    }
}

/// A request's header list as qlog's HTTP/3 schema writes it, pseudo-headers first.
fn qlog_headers(request: &hyper::Request<()>) -> Vec<serde_json::Value> {
    let uri = request.uri();
    let mut fields = vec![
        serde_json::json!({ "name": ":method", "value": request.method().as_str() }),
        serde_json::json!({ "name": ":scheme", "value": uri.scheme_str().unwrap_or("https") }),
        serde_json::json!({
            "name": ":authority",
            "value": uri.authority().map_or("", |a| a.as_str()),
        }),
        serde_json::json!({
            "name": ":path",
            "value": uri.path_and_query().map_or("/", |p| p.as_str()),
        }),
    ];
    fields.extend(qlog_fields(request.headers()));
    fields
}

fn qlog_fields(headers: &hyper::HeaderMap) -> impl Iterator<Item = serde_json::Value> + '_ {
    headers.iter().map(|(name, value)| {
        serde_json::json!({ "name": name.as_str(), "value": String::from_utf8_lossy(value.as_bytes()) })
    })
}
