//! What a request carries ([`Body`]): nothing, bytes in memory, a file read as it is sent, or
//! a stream of bytes made as they are sent — URLRequest's `httpBody`, an upload task's file,
//! and `httpBodyStream` with URLSession's `needNewBodyStream`.
//!
//! A body that is sent again (a redirect that keeps its method, a request the server refused
//! unprocessed, a pooled connection found dead, a refreshed credential) is sent whole from its
//! start: bytes as they are, a file read again, a stream made again. A stream that can be made
//! only once ([`Streamed::once`]) makes a request that would need it again fail, saying so,
//! instead of sending a body that is not the one asked for.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use crate::TransferError;
use crate::http::RequestBody;

/// A stream of a body's pieces.
pub type Pieces = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What a request carries.
#[derive(Clone, Default)]
pub enum Body {
    /// Nothing.
    #[default]
    Empty,
    /// Bytes in memory: a JSON document, a form.
    Bytes(Bytes),
    /// The bytes of a regular file, read as they are sent (never held whole), with its length
    /// as `Content-Length`; read from its start again when the request goes again.
    File(PathBuf),
    /// Bytes made as they are sent.
    Stream(Streamed),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Stream(s) => f.debug_tuple("Stream").field(s).finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes.into())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::Bytes(text.into())
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::Bytes(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Self::Bytes(Bytes::from_static(bytes))
    }
}

impl From<Streamed> for Body {
    fn from(stream: Streamed) -> Self {
        Self::Stream(stream)
    }
}

impl Body {
    /// Whether it is certainly nothing: `Empty`, or no bytes. (A file or a stream may turn
    /// out empty when sent.)
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Bytes(b) => b.is_empty(),
            Self::File(_) | Self::Stream(_) => false,
        }
    }

    /// Whether it can be sent more than once: all but a [`Streamed::once`].
    pub fn repeatable(&self) -> bool {
        !matches!(self, Self::Stream(s) if s.once)
    }
}

/// A body made as it is sent.
#[derive(Clone)]
pub struct Streamed {
    length: Option<u64>,
    once: bool,
    make: Arc<dyn Fn() -> Option<Pieces> + Send + Sync>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed").field("length", &self.length).field("once", &self.once).finish()
    }
}

impl Streamed {
    /// A body `make` makes each time the request is sent: once, and again whenever it must go
    /// again (as URLSession asks its delegate for a new body stream). `length`: how many bytes
    /// each stream yields, when known, sent as `Content-Length` (a stream that yields another
    /// number fails the request); without it, HTTP/1.1 sends the body in chunks.
    pub fn new<S>(length: Option<u64>, make: impl Fn() -> S + Send + Sync + 'static) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        Self { length, once: false, make: Arc::new(move || Some(make().boxed())) }
    }

    /// A body that can be sent once: a request that would have to send it again fails with
    /// [`Code::RequestBodyStreamExhausted`](crate::Code::RequestBodyStreamExhausted) instead;
    /// and such a request, unless the server said it did nothing with it, is never sent
    /// twice. `length` as for [`new`](Self::new).
    pub fn once<S>(length: Option<u64>, stream: S) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let slot: Mutex<Option<Pieces>> = Mutex::new(Some(stream.boxed()));
        let make = move || slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        Self { length, once: true, make: Arc::new(make) }
    }
}

/// A body ready to go on one sending: the HTTP stack's body, its length when known, and for
/// a file or a stream the bytes handed over so far and the failure of its source.
pub(crate) struct Sending {
    pub(crate) body: Option<RequestBody>,
    pub(crate) length: Option<u64>,
    pub(crate) streamed: Option<Progress>,
}

/// How a streamed body's sending goes.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    /// Bytes handed to the HTTP stack.
    pub(crate) sent: Arc<AtomicU64>,
    /// What its source failed with: kept here as well as handed to the HTTP stack, which may
    /// report only that the body failed (hyper's HTTP/2 resets the stream, "internal error").
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl Progress {
    /// What the body's source failed with, if it did.
    pub(crate) fn failure(&self) -> Option<std::io::Error> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Body {
    /// The body for one sending of a request to `url`: a file opened (on a blocking thread: a
    /// slow disk, a network file system) and read ahead, a stream made. `again`: why the
    /// request goes again, when it does (for a stream that can be made once, the error).
    pub(crate) async fn sending(
        &self,
        url: &str,
        again: Option<&str>,
    ) -> Result<Sending, TransferError> {
        let (pieces, length): (Pieces, Option<u64>) = match self {
            Self::Empty => return Ok(Sending { body: None, length: Some(0), streamed: None }),
            Self::Bytes(b) => {
                let length = Some(b.len() as u64);
                let body = (!b.is_empty())
                    .then(|| Full::new(b.clone()).map_err(|never| match never {}).boxed());
                return Ok(Sending { body, length, streamed: None });
            }
            Self::File(path) => {
                let source = path.clone();
                let (file, meta) = tokio::task::spawn_blocking(move || {
                    nw_trust::files::open_regular(&source, true)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|e| TransferError::Body {
                    url: url.to_owned(),
                    why: format!("{}: cannot open it to send: {e}", path.display()),
                })?;
                let rx = crate::tasks::read_ahead(file, meta.len());
                let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|piece| (piece, rx))
                });
                (pieces.boxed(), Some(meta.len()))
            }
            Self::Stream(s) => {
                let Some(pieces) = (s.make)() else {
                    let why = again.unwrap_or("it was asked for twice").to_owned();
                    return Err(TransferError::BodyExhausted { url: url.to_owned(), why });
                };
                (pieces, s.length)
            }
        };
        let progress = Progress::default();
        let (sent, failure) = (progress.sent.clone(), progress.failure.clone());
        let state = (Shareable(Mutex::new(pieces)), 0u64, false);
        let frames = futures_util::stream::unfold(state, move |(mut pieces, got, done)| {
            let (sent, failure) = (sent.clone(), failure.clone());
            async move {
                if done {
                    return None;
                }
                let fail = |e: std::io::Error| {
                    let told = std::io::Error::new(e.kind(), e.to_string());
                    *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    told
                };
                let (frame, got, done) = match pieces.next().await {
                    Some(Ok(piece)) => {
                        let got = got + piece.len() as u64;
                        if length.is_some_and(|l| got > l) {
                            (Err(fail(wrong_length(got, length))), got, true)
                        } else {
                            // Counted as it is handed over: the stack writes a piece before
                            // asking for the next.
                            sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
                            (Ok(Frame::data(piece)), got, false)
                        }
                    }
                    Some(Err(e)) => (Err(fail(e)), got, true),
                    None if length.is_some_and(|l| got != l) => {
                        (Err(fail(wrong_length(got, length))), got, true)
                    }
                    None => return None,
                };
                Some((frame, (pieces, got, done)))
            }
        });
        Ok(Sending {
            body: Some(BodyExt::boxed(StreamBody::new(frames))),
            length,
            streamed: Some(progress),
        })
    }
}

/// A stream that yielded `got` bytes where it declared `length`.
fn wrong_length(got: u64, length: Option<u64>) -> std::io::Error {
    let declared = length.unwrap_or_default();
    let what = if got > declared {
        format!("yielded {got} bytes or more")
    } else {
        format!("ended after {got} bytes")
    };
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("it {what} where it declared {declared}"),
    )
}

/// A stream the HTTP stack may hold across threads (it asks its bodies to be `Sync`), which a
/// caller's stream need not be: only ever polled through `&mut`, its lock is never contended.
struct Shareable(Mutex<Pieces>);

impl Stream for Shareable {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().0.get_mut().unwrap_or_else(PoisonError::into_inner).poll_next_unpin(cx)
    }
}
