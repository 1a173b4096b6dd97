//! HTTP/1.1 on one connection (RFC 9112): the driver of nw-http's sans-IO codec
//! ([`nw_http::h1`]), which parses heads and follows a body's framing; this does the I/O.
//! Written for downloads: a response body is read straight from the connection into the
//! caller's buffer, so a large download's bytes go from the socket (or from TLS's plaintext)
//! into the aligned buffers the file is written from without passing through a read buffer of
//! ours. A general client's body is a sequence of pieces it has already read; copying those
//! into the file's buffers cost about 14% of `nw get`'s CPU time on loopback (`perf`,
//! `__memmove_avx_unaligned_erms`), which is why this is ours and not hyper's.
//!
//! What it does: one request at a time; informational (1xx) answers skipped; the connection
//! kept for the next request when the answer allows it and its body was read to the end. A
//! request body is sent with the length it declares or in chunks, and an answer that comes
//! before the body is all sent is read (the connection is then not reused).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf as _, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::header::HeaderMap;
use nw_connection::Io;
use nw_http::h1::{self, BodyDecoder, H1Error, Next};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use crate::TransferError;
use crate::http::{RequestBody, USER_AGENT, failed};

/// What one read of a head, a chunk-size line or a trailer asks for.
const SMALL_READ: usize = 16 << 10;
/// What one read asks for when the body is wanted as pieces ([`Body::data`]).
const PIECE: usize = 256 << 10;

/// A connection between requests, and what was read past the last answer (nothing, from a
/// well-behaved server).
#[derive(Debug)]
struct Idle {
    io: Box<dyn Io>,
    buf: BytesMut,
}

/// Where a connection waits between requests: empty while a request or its answer's body has
/// it, and for good once it cannot carry another request.
type Slot = Arc<Mutex<Option<Idle>>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Idle>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An HTTP/1.1 connection.
pub(crate) struct Connection {
    slot: Slot,
}

/// An answer's head and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
}

/// A request to send.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a hyper::Method,
    /// The origin form: path and query.
    pub(crate) target: &'a str,
    /// `Host`.
    pub(crate) authority: &'a str,
    pub(crate) headers: &'a [(&'a str, String)],
    pub(crate) body: Option<RequestBody>,
}

/// The codec's word as the transfer's error: a body the connection cut short is a lost
/// connection (transient: what came stays checkpointed and is resumed), anything else — a
/// malformed chunk among them — an HTTP failure (not tried again, as curl does not; what came
/// is kept for `--resume` all the same).
fn codec(e: H1Error) -> TransferError {
    match e {
        H1Error::Body { .. } => TransferError::Lost(e.to_string()),
        e => TransferError::Http(e.to_string()),
    }
}

impl Connection {
    pub(crate) fn new(io: Box<dyn Io>) -> Self {
        Self { slot: Arc::new(Mutex::new(Some(Idle { io, buf: BytesMut::new() }))) }
    }

    /// It cannot carry a request: it is busy or gone, or the peer closed it (or sent something
    /// nobody asked for) while it was idle. Looks without waiting.
    pub(crate) fn is_closed(&self) -> bool {
        let mut slot = lock(&self.slot);
        let Some(idle) = slot.as_mut() else { return true };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut idle.io).poll_read(&mut cx, &mut buf) {
            Poll::Pending => false,
            Poll::Ready(_) => {
                *slot = None;
                true
            }
        }
    }

    /// Sends `request` and reads the answer's head. The connection is busy until the answer's
    /// body has been read to its end (or dropped, which closes it).
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<Response, TransferError> {
        let head = h1::request_head(&h1::RequestHead {
            method: request.method,
            target: request.target,
            authority: request.authority,
            user_agent: USER_AGENT,
            headers: request.headers,
            body: request.body.is_some(),
        })
        .map_err(codec)?;
        let Some(Idle { mut io, mut buf }) = lock(&self.slot).take() else {
            return Err(failed(&"the connection is busy or closed"));
        };
        let (answer, mut reusable) = match request.body {
            None => {
                io.write_all(&head).await.map_err(|e| cut(&e, "while sending the request"))?;
                io.flush().await.map_err(|e| cut(&e, "while sending the request"))?;
                (read_head(&mut io, &mut buf).await?, true)
            }
            Some(body) => {
                let chunked = !h1::declares_length(request.headers);
                let (mut r, mut w) = tokio::io::split(io);
                let sending = async {
                    w.write_all(&head).await.map_err(Unsent::Write)?;
                    send_body(&mut w, body, chunked).await
                };
                let answer = {
                    tokio::pin!(sending);
                    let reading = read_head(&mut r, &mut buf);
                    tokio::pin!(reading);
                    tokio::select! {
                        sent = &mut sending => match sent {
                            Ok(()) => (reading.await?, true),
                            // The peer may have answered and stopped reading: its answer
                            // explains more than the broken pipe does.
                            Err(Unsent::Write(e)) => {
                                let cut = |_| cut(&e, "while sending the request's body");
                                (reading.await.map_err(cut)?, false)
                            }
                            // The body itself failed (a file that could not be read): the peer
                            // still waits for the rest, so there is no answer to wait for.
                            Err(Unsent::Body(e)) => return Err(failed(&e)),
                        },
                        // An answer before the whole body went: the rest is not sent, so
                        // the connection cannot carry another request.
                        answer = &mut reading => (answer?, false),
                    }
                };
                io = r.unsplit(w);
                answer
            }
        };
        let decoder = BodyDecoder::new(&answer, request.method);
        reusable &= answer.keep_alive && !decoder.ends_with_close();
        let mut body = Body {
            conn: Some(Idle { io, buf }),
            decoder,
            reusable,
            slot: self.slot.clone(),
            pieces: BytesMut::new(),
        };
        body.finish_if_done();
        Ok(Response { status: answer.status, headers: answer.headers, body })
    }
}

/// Why a request body did not all go.
enum Unsent {
    /// Writing failed: the peer may have answered and stopped reading.
    Write(std::io::Error),
    /// The body itself failed, say a file that could not be read.
    Body(std::io::Error),
}

/// Writes `body`, in chunks when its length was not declared, and flushes.
async fn send_body(
    w: &mut (impl AsyncWrite + Unpin),
    mut body: RequestBody,
    chunked: bool,
) -> Result<(), Unsent> {
    async fn write(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> Result<(), Unsent> {
        w.write_all(data).await.map_err(Unsent::Write)
    }
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unsent::Body)?.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        if chunked {
            write(w, h1::chunk_header(data.len()).as_bytes()).await?;
            write(w, &data).await?;
            write(w, b"\r\n").await?;
        } else {
            write(w, &data).await?;
        }
    }
    if chunked {
        write(w, h1::LAST_CHUNK).await?;
    }
    w.flush().await.map_err(Unsent::Write)
}

/// Reads the answer's head (informational answers passed over); `buf` keeps what was read
/// past it.
async fn read_head(
    io: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<h1::Head, TransferError> {
    loop {
        if let Some(head) = h1::response_head(buf).map_err(codec)? {
            return Ok(head);
        }
        buf.reserve(SMALL_READ);
        let n = io.read_buf(buf).await.map_err(|e| cut(&e, "before the answer came"))?;
        if n == 0 {
            return Err(TransferError::Lost(if buf.is_empty() {
                "the connection closed before an answer came".to_owned()
            } else {
                "the connection closed in the middle of the answer's head".to_owned()
            }));
        }
    }
}

/// An answer's body, read from the connection as the caller asks; at its end the connection
/// goes back to wait for the next request when it can.
#[derive(Debug)]
pub(crate) struct Body {
    conn: Option<Idle>,
    decoder: BodyDecoder,
    reusable: bool,
    slot: Slot,
    /// The buffer [`data`](Self::data) reads pieces into.
    pieces: BytesMut,
}

impl Body {
    /// Reads body bytes into `out` (up to its remaining capacity); 0 at the body's end. Bytes
    /// come straight from the connection into `out`, except the few read past a head or a
    /// chunk-size line.
    pub(crate) async fn read(&mut self, out: &mut impl BufMut) -> Result<usize, TransferError> {
        loop {
            if out.remaining_mut() == 0 {
                return Ok(0);
            }
            let got = self.decoder.got();
            let Some(conn) = self.conn.as_mut() else { return Ok(0) };
            let want = match self.decoder.next(&mut conn.buf).map_err(codec)? {
                Next::Done => {
                    self.finish_if_done();
                    return Ok(0);
                }
                Next::NeedMore => {
                    conn.buf.reserve(SMALL_READ);
                    let n =
                        conn.io.read_buf(&mut conn.buf).await.map_err(|e| read_failed(got, &e))?;
                    if n == 0 {
                        self.decoder.closed().map_err(codec)?;
                    }
                    continue;
                }
                Next::Data(want) => want,
            };
            let cap = usize::try_from(want).unwrap_or(usize::MAX).min(out.remaining_mut());
            let n = if conn.buf.is_empty() {
                let mut limited = (&mut *out).limit(cap);
                conn.io.read_buf(&mut limited).await.map_err(|e| read_failed(got, &e))?
            } else {
                let n = cap.min(conn.buf.len());
                out.put_slice(&conn.buf[..n]);
                conn.buf.advance(n);
                n
            };
            if n == 0 {
                // The end of a body framed by the close; else it was cut short.
                self.decoder.closed().map_err(codec)?;
                self.finish_if_done();
                return Ok(0);
            }
            self.decoder.consumed(n as u64);
            self.finish_if_done();
            return Ok(n);
        }
    }

    /// The next piece of the body, up to [`PIECE`] bytes; `None` at its end.
    pub(crate) async fn data(&mut self) -> Option<Result<Bytes, TransferError>> {
        let mut pieces = std::mem::take(&mut self.pieces);
        // Reclaims the space of pieces already dropped.
        pieces.reserve(PIECE);
        let mut room = (&mut pieces).limit(PIECE);
        let read = self.read(&mut room).await;
        let piece = pieces.split().freeze();
        self.pieces = pieces;
        match read {
            Ok(0) => None,
            Ok(_) => Some(Ok(piece)),
            Err(e) => Some(Err(e)),
        }
    }

    /// At the body's end, gives the connection back to wait for the next request when it can
    /// carry one; otherwise it is closed.
    fn finish_if_done(&mut self) {
        if !self.decoder.is_done() {
            return;
        }
        if let Some(conn) = self.conn.take()
            && self.reusable
            // Bytes past the end: the server does not frame its answers as it says.
            && conn.buf.is_empty()
        {
            *lock(&self.slot) = Some(conn);
        }
    }
}

/// The connection failed (reset, closed, a broken pipe) `when` — before the answer's head: a
/// lost connection, which may pass (`--retry` sends an idempotent request again), not a
/// failure of HTTP.
fn cut(e: &dyn std::fmt::Display, when: &str) -> TransferError {
    TransferError::Lost(format!("{e} {when}"))
}

/// The connection failed after `got` bytes of the body.
fn lost(got: u64, e: &dyn std::fmt::Display) -> TransferError {
    TransferError::Lost(format!("{e} after {got} bytes of the body"))
}

/// A read that failed after `got` bytes of the body. A TLS stream cut without its
/// close_notify (the peer, or a proxy carrying the TLS, went away) is said in those words
/// rather than as rustls's text with its manual's address.
fn read_failed(got: u64, e: &std::io::Error) -> TransferError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => lost(
            got,
            &"TLS ended without its close_notify (the other end, or a proxy between, went away)",
        ),
        _ => lost(got, e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    #[test]
    fn a_tls_stream_cut_without_close_notify_is_said_in_words() {
        use std::io::{Error, ErrorKind};
        // rustls's own text, with its manual's address, as tokio-rustls hands it over.
        let cut = Error::new(
            ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/",
        );
        let said = read_failed(7, &cut).to_string();
        assert!(
            said.contains("TLS ended without its close_notify") && said.contains("after 7 bytes")
        );
        assert!(!said.contains("docs.rs"), "{said}");
        let reset = read_failed(7, &Error::from(ErrorKind::ConnectionReset)).to_string();
        assert!(reset.contains("reset"), "other errors are kept: {reset}");
    }

    fn pair() -> (Connection, DuplexStream) {
        let (client, server) = tokio::io::duplex(64 << 10);
        (Connection::new(Box::new(client)), server)
    }

    fn get<'a>(target: &'a str, headers: &'a [(&'a str, String)]) -> Request<'a> {
        Request { method: &hyper::Method::GET, target, authority: "h:1", headers, body: None }
    }

    /// Reads one request head from the server's end.
    async fn request_head(server: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(server.read(&mut byte).await.unwrap(), 1, "the request head ends");
            got.push(byte[0]);
        }
        String::from_utf8(got).unwrap()
    }

    /// Serves one exchange: reads the request head and sends `wire`; returns the head.
    async fn serve(server: &mut DuplexStream, wire: &[u8]) -> String {
        let head = request_head(server).await;
        server.write_all(wire).await.unwrap();
        head
    }

    /// The whole body through [`Body::read`] into buffers of `size`.
    async fn read_all(body: &mut Body, size: usize) -> Result<Vec<u8>, TransferError> {
        let mut all = Vec::new();
        loop {
            let mut buf = vec![0u8; size];
            let n = body.read(&mut &mut buf[..]).await?;
            if n == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn a_length_framed_body_is_read_exactly_and_the_connection_carries_the_next_request() {
        run(async {
            let (conn, mut server) = pair();
            let headers = [("range", "bytes=5-".to_owned())];
            let sent = conn.send(get("/a?b=1", &headers));
            let served = async {
                let head =
                    serve(&mut server, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123").await;
                server.write_all(b"456789").await.unwrap();
                head
            };
            let (answer, head) = tokio::join!(sent, served);
            assert!(
                head.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: h:1\r\nuser-agent: nw/"),
                "{head}"
            );
            assert!(head.contains("\r\nrange: bytes=5-\r\n"), "{head}");
            let mut answer = answer.unwrap();
            assert_eq!(answer.status, 200);
            assert!(conn.is_closed(), "busy while the body is unread");
            assert_eq!(read_all(&mut answer.body, 3).await.unwrap(), b"0123456789");
            assert!(!conn.is_closed(), "back to idle once the body was read to its end");
            let sent = conn.send(get("/next", &[]));
            let served = serve(&mut server, b"HTTP/1.1 204 No Content\r\n\r\n");
            let (answer, head) = tokio::join!(sent, served);
            assert!(head.starts_with("GET /next "), "{head}");
            let mut answer = answer.unwrap();
            assert_eq!(answer.status, 204);
            assert_eq!(answer.body.data().await.map(|r| r.unwrap()), None);
            drop(server);
            assert!(conn.is_closed(), "the peer's close is seen while idle");
        });
    }

    #[test]
    fn a_chunked_body_with_extensions_and_trailers_is_decoded_across_any_split() {
        let wire: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n0005\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";
        for split in [1, 2, 7, 1000] {
            run(async {
                let (conn, mut server) = pair();
                let sent = conn.send(get("/", &[]));
                let serve = async {
                    request_head(&mut server).await;
                    for piece in wire.chunks(split) {
                        server.write_all(piece).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                };
                let (answer, ()) = tokio::join!(sent, serve);
                let mut answer = answer.unwrap();
                assert_eq!(answer.status, 200, "the 100 is skipped");
                let body = read_all(&mut answer.body, 5).await.unwrap();
                assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "split into pieces of {split}");
                assert!(!conn.is_closed(), "reusable after the trailers");
            });
        }
    }

    #[test]
    fn answers_that_cannot_be_trusted_fail_clearly_or_close_the_connection() {
        // Each: what the server sends (then it closes), and what reading it must give.
        let cases: [(&[u8], &str); 6] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed after 5 bytes"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP/1.1"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                "several lengths",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "not a number"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Enc", "in the middle of the answer's head"),
        ];
        for (wire, want) in cases {
            run(async {
                let (conn, mut server) = pair();
                // The server closes once it has sent the case's bytes.
                let closing = async move { serve(&mut server, wire).await };
                let (answer, _) = tokio::join!(conn.send(get("/", &[])), closing);
                let error = match answer {
                    Err(e) => e.to_string(),
                    Ok(mut a) => read_all(&mut a.body, 64).await.unwrap_err().to_string(),
                };
                assert!(error.contains(want), "{:?}: {error}", String::from_utf8_lossy(wire));
            });
        }
        // Framed by the close, or asking to close: read to the end, and not kept.
        for wire in [
            &b"HTTP/1.0 200 OK\r\n\r\nuntil the end"[..],
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\n\r\nuntil the end",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\nd\r\nuntil the end\r\n0\r\n\r\n",
        ] {
            run(async {
                let (conn, mut server) = pair();
                let (answer, _) = tokio::join!(conn.send(get("/", &[])), serve(&mut server, wire));
                drop(server);
                let mut answer = answer.unwrap();
                // A length beside Transfer-Encoding is not passed on for anyone to size by.
                if wire.windows(18).any(|w| w == b"Transfer-Encoding:") {
                    assert_eq!(answer.headers.get(hyper::header::CONTENT_LENGTH), None);
                }
                assert_eq!(read_all(&mut answer.body, 4).await.unwrap(), b"until the end");
                assert!(conn.is_closed(), "{:?} is not kept", String::from_utf8_lossy(wire));
            });
        }
    }

    #[test]
    fn requests_that_would_smuggle_fields_are_refused_before_sending() {
        run(async {
            let (conn, _server) = pair();
            let evil = [("x-a", "1\r\nhost: elsewhere".to_owned())];
            let e = conn.send(get("/", &evil)).await.unwrap_err().to_string();
            assert!(e.contains("the value of x-a is not a field value"), "{e}");
            let e = conn.send(get("/a b", &[])).await.unwrap_err().to_string();
            assert!(e.contains("is not a request target"), "{e}");
            assert!(!conn.is_closed(), "nothing was sent: still usable");
        });
    }

    #[test]
    fn an_answer_before_the_whole_upload_went_is_read_and_the_connection_dropped() {
        run(async {
            let (conn, mut server) = pair();
            // 8 MiB that the server never reads: far more than the pipe holds.
            let pieces = futures_util::stream::iter(
                (0..8).map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![0u8; 1 << 20])))),
            );
            let body = http_body_util::StreamBody::new(pieces).boxed();
            let request = Request {
                method: &hyper::Method::PUT,
                target: "/put/x",
                authority: "h:1",
                headers: &[],
                body: Some(body),
            };
            let wire = b"HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\n\r\nbig!";
            let (answer, head) = tokio::join!(conn.send(request), serve(&mut server, wire));
            assert!(head.contains("transfer-encoding: chunked\r\n"), "no declared length: {head}");
            let mut answer = answer.unwrap();
            assert_eq!(answer.status, 413);
            assert_eq!(read_all(&mut answer.body, 64).await.unwrap(), b"big!");
            assert!(conn.is_closed(), "half a body went: the connection is not kept");
        });
    }
}
