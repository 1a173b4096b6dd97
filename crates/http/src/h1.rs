//! HTTP/1.1's message syntax (RFC 9112) as a sans-IO codec: bytes in, heads and body
//! boundaries out. It never reads or writes a socket, so every split of an answer into reads
//! can be tested as pure data; nw-transfer's HTTP/1.1 connection is the driver that does the
//! I/O.
//!
//! - [`request_head`] forms a request line and its fields, refusing a target, name or value
//!   that would smuggle another field or request.
//! - [`response_head`] takes an answer's head off the front of the bytes read so far, skipping
//!   informational (1xx) answers, and says how its body is framed ([`Framing`]) and whether the
//!   connection may carry another request.
//! - [`BodyDecoder`] follows the body's framing: it says how many body bytes may come next
//!   ([`Next::Data`]) — which the driver may read straight into its caller's buffer, no copy
//!   through ours — or that framing bytes are needed first (a chunk-size line, trailers), and
//!   when the body has ended.
//!
//! A request body is framed by its declared `Content-Length`, or in chunks ([`chunk_header`],
//! [`LAST_CHUNK`]).

use bytes::{Buf as _, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The largest response head accepted (status line and fields), and the longest chunk-size or
/// trailer line.
pub const MAX_HEAD: usize = 64 << 10;
/// The most header fields in a response head.
pub const MAX_FIELDS: usize = 128;
/// The end of a chunked request body: the last (empty) chunk and no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What is wrong with a message, in HTTP's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H1Error {
    /// The request cannot be put on the wire as asked (a target with spaces, a field value
    /// with a line break).
    #[error("{target}: cannot form a request for it: {why}")]
    Request {
        /// The request target.
        target: String,
        /// What is wrong.
        why: String,
    },
    /// The answer's head does not parse as HTTP/1.1, or contradicts itself.
    #[error("the answer is not HTTP/1.1: {0}")]
    NotHttp(String),
    /// The answer's head runs past [`MAX_HEAD`].
    #[error("the answer's head is longer than {} KiB", MAX_HEAD >> 10)]
    HeadTooLong,
    /// A 101 nobody asked for.
    #[error("the server switched protocols, which nothing asked for")]
    Switched,
    /// The connection ended before the body did.
    #[error("{why} after {got} bytes of the body")]
    Body {
        /// What went wrong.
        why: String,
        /// Body bytes delivered before it.
        got: u64,
    },
    /// The body broke its chunked framing: the server sent something that is not HTTP/1.1,
    /// which sending the request again would most likely get again.
    #[error("the chunked body is malformed: {why} after {got} bytes of it")]
    Framing {
        /// What is wrong.
        why: String,
        /// Body bytes delivered before it.
        got: u64,
    },
}

/// A request's head, as [`request_head`] forms it.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a hyper::Method,
    /// The origin form (path and query), or the absolute form through a proxy.
    pub target: &'a str,
    /// `Host`.
    pub authority: &'a str,
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// The other fields, in order.
    pub headers: &'a [(&'a str, String)],
    /// Whether a body follows (in chunks unless `headers` declare its length).
    pub body: bool,
}

/// The request line and fields, with `Transfer-Encoding: chunked` when a body follows whose
/// length the fields do not declare.
pub fn request_head(request: &RequestHead<'_>) -> Result<Vec<u8>, H1Error> {
    let refused = |why: String| H1Error::Request { target: request.target.to_owned(), why };
    if request.target.is_empty() || request.target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(refused(format!("{:?} is not a request target", request.target)));
    }
    let mut head = Vec::with_capacity(256);
    let line = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    head.extend_from_slice(line.as_bytes());
    let fixed = [("host", request.authority), ("user-agent", request.user_agent)];
    let given = request.headers.iter().map(|(n, v)| (*n, v.as_str()));
    for (name, value) in fixed.into_iter().chain(given) {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| refused(format!("{name:?} is not a field name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| refused(format!("the value of {name} is not a field value")))?;
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if request.body && !declares_length(request.headers) {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// Whether `headers` declare the body's length (else it goes in chunks).
pub fn declares_length(headers: &[(&str, String)]) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
}

/// What goes before `len` bytes of a chunked request body (the CRLF after them is the
/// caller's: `b"\r\n"`).
pub fn chunk_header(len: usize) -> String {
    format!("{len:x}\r\n")
}

/// How an answer's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes.
    Length(u64),
    /// In chunks.
    Chunked,
    /// When the peer closes the connection.
    Close,
}

/// An answer's head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The fields (`Content-Length` removed when `Transfer-Encoding` overrides it).
    pub headers: HeaderMap,
    /// How the body is framed, as the head says (see [`BodyDecoder::new`] for answers that
    /// have none).
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub keep_alive: bool,
}

/// Takes a complete final answer's head off the front of `buf`, passing over informational
/// answers (100 Continue, 103 Early Hints); `None` when more bytes are needed.
pub fn response_head(buf: &mut BytesMut) -> Result<Option<Head>, H1Error> {
    loop {
        match parse_head(buf)? {
            Some(head) if head.status == 101 => return Err(H1Error::Switched),
            Some(head) if (100..200).contains(&head.status) => {}
            Some(head) => return Ok(Some(head)),
            None if buf.len() >= MAX_HEAD => return Err(H1Error::HeadTooLong),
            None => return Ok(None),
        }
    }
}

/// One head at the front of `buf` (removed from it), or `None` when more is needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, H1Error> {
    let bad = H1Error::NotHttp;
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| bad(format!("{:?} is not a field name", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| bad(format!("the value of {name} is not a field value")))?;
        headers.append(name, value);
    }
    let tokens = |name: HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
    };
    let connection = tokens(hyper::header::CONNECTION);
    // HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps unless asked to close.
    let mut keep_alive = match response.version {
        Some(1) => !connection.iter().any(|t| t == "close"),
        _ => connection.iter().any(|t| t == "keep-alive"),
    };
    let codings = tokens(hyper::header::TRANSFER_ENCODING);
    let lengths = tokens(hyper::header::CONTENT_LENGTH);
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length (and then the connection is
    // not trusted for another request); chunked as the final coding frames the body, any
    // other coding means the body ends with the connection.
    // Nothing here sends `TE`, so chunked is the one transfer coding a server may use (RFC
    // 9110 §10.1.4); the body under another (gzip, say) would be saved still coded, so it is
    // refused rather than passed off as the content. (`identity`, long obsolete, is nothing.)
    if let Some(other) = codings.iter().find(|c| *c != "chunked" && *c != "identity") {
        return Err(bad(format!(
            "it uses the transfer coding {other:?}, which nothing asked for and nw does not undo"
        )));
    }
    let codings: Vec<&String> = codings.iter().filter(|c| *c != "identity").collect();
    let framing = if let Some(last) = codings.last() {
        keep_alive &= lengths.is_empty();
        // The length no longer describes the body: no layer above may read it as the size.
        headers.remove(hyper::header::CONTENT_LENGTH);
        if *last == "chunked" { Framing::Chunked } else { Framing::Close }
    } else if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(bad(format!("it gives several lengths ({})", lengths.join(", "))));
        }
        // 1*DIGIT (RFC 9110 §8.6): not the sign `parse` would take.
        let n = Some(first)
            .filter(|f| f.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("its Content-Length {first:?} is not a number")))?;
        Framing::Length(n)
    } else {
        Framing::Close
    };
    buf.advance(len);
    Ok(Some(Head { status, headers, framing, keep_alive }))
}

/// What the body needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Up to this many body bytes come next (`u64::MAX`: until the connection closes): take
    /// them from the front of the buffer, or, when it is empty, read them straight from the
    /// connection; then say how many with [`BodyDecoder::consumed`].
    Data(u64),
    /// Framing bytes must be read into the buffer first.
    NeedMore,
    /// The body has ended; bytes left in the buffer are past it.
    Done,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data, this much of it left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    End,
    /// After the last chunk, in the trailer section.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// An answer's body as its framing delimits it.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    got: u64,
}

impl BodyDecoder {
    /// The body of an answer to a request of `method` with `head`: none for HEAD, 204 and 304
    /// whatever the head says (RFC 9112 §6.3).
    pub fn new(head: &Head, method: &hyper::Method) -> Self {
        let none = *method == hyper::Method::HEAD || matches!(head.status, 204 | 304);
        let state = match head.framing {
            _ if none => State::Done,
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        Self { state, got: 0 }
    }

    /// What comes next, taking any framing (chunk-size lines, the CRLF after a chunk,
    /// trailers) off the front of `buf`.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Next, H1Error> {
        loop {
            let step = match self.state {
                State::Done => return Ok(Next::Done),
                State::Length(n) | State::Chunked(Chunk::Data(n)) => return Ok(Next::Data(n)),
                State::Close => return Ok(Next::Data(u64::MAX)),
                State::Chunked(step) => step,
            };
            // Framing: a line at a time, as far as the buffer goes.
            let Some(line) = self.line(buf)? else { return Ok(Next::NeedMore) };
            self.state = self.after_line(step, &line)?;
        }
    }

    /// `n` body bytes were delivered (at most what [`Next::Data`] allowed).
    pub fn consumed(&mut self, n: u64) {
        self.got += n;
        self.state = match self.state {
            State::Length(left) if left <= n => State::Done,
            State::Length(left) => State::Length(left - n),
            State::Chunked(Chunk::Data(left)) if left <= n => State::Chunked(Chunk::End),
            State::Chunked(Chunk::Data(left)) => State::Chunked(Chunk::Data(left - n)),
            other => other,
        };
    }

    /// The connection ended: the end of a body framed by the close, else an error saying
    /// where the body was cut.
    pub fn closed(&mut self) -> Result<(), H1Error> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            State::Chunked(Chunk::Data(_)) | State::Length(_) => {
                Err(self.error("the connection closed"))
            }
            State::Chunked(_) => {
                Err(self.error("the connection closed in the middle of the chunked body"))
            }
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends with the connection (which then cannot carry another request).
    pub fn ends_with_close(&self) -> bool {
        self.state == State::Close
    }

    /// Body bytes delivered so far.
    pub fn got(&self) -> u64 {
        self.got
    }

    fn error(&self, why: &str) -> H1Error {
        H1Error::Body { why: why.to_owned(), got: self.got }
    }

    fn malformed(&self, why: &str) -> H1Error {
        H1Error::Framing { why: why.to_owned(), got: self.got }
    }

    /// A line of framing off the front of `buf` (without its CRLF), if it is all there.
    fn line(&self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, H1Error> {
        match buf.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                let line = buf.split_to(at + 2);
                Ok(Some(line[..at].to_vec()))
            }
            None if buf.len() >= MAX_HEAD => {
                Err(self.malformed("a chunk's framing line is too long"))
            }
            None => Ok(None),
        }
    }

    fn after_line(&self, step: Chunk, line: &[u8]) -> Result<State, H1Error> {
        Ok(match step {
            Chunk::Size => {
                // chunk-size [ chunk-ext ] (RFC 9112 §7.1); extensions are ignored.
                let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                let digits = std::str::from_utf8(digits).unwrap_or("").trim();
                let size = u64::from_str_radix(digits, 16).map_err(|_| {
                    self.malformed(&format!(
                        "{:?} is not a chunk size",
                        String::from_utf8_lossy(line)
                    ))
                })?;
                match size {
                    0 => State::Chunked(Chunk::Trailers),
                    n => State::Chunked(Chunk::Data(n)),
                }
            }
            Chunk::End if line.is_empty() => State::Chunked(Chunk::Size),
            Chunk::End => return Err(self.malformed("a chunk is longer than its size says")),
            Chunk::Trailers if line.is_empty() => State::Done,
            Chunk::Trailers | Chunk::Data(_) => State::Chunked(Chunk::Trailers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` (a whole answer) fed in pieces of `step` bytes, as a driver would:
    /// the head, then the body, taking body bytes from the buffer. Returns the status and
    /// body, or the first error.
    fn decode(wire: &[u8], step: usize) -> Result<(u16, Vec<u8>, bool), H1Error> {
        let mut pieces = wire.chunks(step.max(1));
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(head) = response_head(&mut buf)? {
                break head;
            }
            match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Err(H1Error::NotHttp("it ended in the head".into())),
            }
        };
        let mut decoder = BodyDecoder::new(&head, &hyper::Method::GET);
        let mut body = Vec::new();
        loop {
            match decoder.next(&mut buf)? {
                Next::Done => return Ok((head.status, body, buf.is_empty())),
                Next::Data(most) if !buf.is_empty() => {
                    let n = usize::try_from(most).unwrap_or(usize::MAX).min(buf.len());
                    body.extend_from_slice(&buf.split_to(n));
                    decoder.consumed(n as u64);
                }
                Next::Data(_) | Next::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => {
                        decoder.closed()?;
                        return Ok((head.status, body, true));
                    }
                },
            }
        }
    }

    #[test]
    fn every_split_of_an_answer_decodes_to_the_same_body() {
        let answers: [(&[u8], u16, &[u8]); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 200, b"0123456789"),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 1\r\n\r\n",
                200,
                b"Wikipedia",
            ),
            (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end"),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, b""),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                200,
                b"hello",
            ),
        ];
        for (wire, status, body) in answers {
            for step in 1..=wire.len() {
                let got = decode(wire, step).unwrap_or_else(|e| panic!("{step}: {e}"));
                assert_eq!((got.0, got.1.as_slice()), (status, body), "split every {step} bytes");
                assert!(got.2, "bytes left past the body (split every {step})");
            }
        }
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let head = |wire: &[u8]| response_head(&mut BytesMut::from(wire)).unwrap().unwrap();
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(7), true));
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 7\r\n\r\n");
        assert!(h.keep_alive);
        // Transfer-Encoding overrides Content-Length, whose field is removed, and the
        // connection is not trusted again.
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(h.headers.get("content-length").is_none());
        // `identity` is nothing: chunked still frames the body.
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        // A HEAD's answer has no body whatever its fields say.
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
        assert!(BodyDecoder::new(&h, &hyper::Method::HEAD).is_done());
    }

    #[test]
    fn answers_that_cannot_be_trusted_are_errors_that_say_why() {
        let fails = |wire: &[u8]| decode(wire, wire.len()).unwrap_err().to_string();
        for (wire, says) in [
            (&b"garbage\r\n\r\n"[..], "the answer is not HTTP/1.1: invalid HTTP version"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
                "it gives several lengths (2, 5)",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "\"-1\" is not a number"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "\"+5\" is not a number"),
            // A transfer coding nothing asked for would be saved still coded.
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                "the transfer coding \"gzip\", which nothing asked for and nw does not undo",
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, br\r\n\r\nx", "coding \"br\""),
            (b"HTTP/1.1 101 Switching\r\n\r\n", "the server switched protocols"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "the chunked body is malformed: \"zz\" is not a chunk size after 0 bytes of it",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                "malformed: a chunk is longer than its size says after 2 bytes of it",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
                "the connection closed after 5 bytes of the body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                "the connection closed in the middle of the chunked body after 5 bytes",
            ),
        ] {
            let error = fails(wire);
            assert!(error.contains(says), "{error}");
        }
        let mut endless = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        endless.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert_eq!(response_head(&mut endless).unwrap_err(), H1Error::HeadTooLong);
        let mut long_line = BytesMut::from(&vec![b'1'; MAX_HEAD][..]);
        let h = Head {
            status: 200,
            headers: HeaderMap::new(),
            framing: Framing::Chunked,
            keep_alive: true,
        };
        let e = BodyDecoder::new(&h, &hyper::Method::GET).next(&mut long_line).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the chunked body is malformed: a chunk's framing line is too long"),
            "{e}"
        );
    }

    #[test]
    fn requests_that_would_smuggle_a_field_or_a_request_are_refused() {
        let get = hyper::Method::GET;
        let request = |target, headers| RequestHead {
            method: &get,
            target,
            authority: "a.test",
            user_agent: "nw/test",
            headers,
            body: false,
        };
        let accept = [("Accept", "*/*".to_owned())];
        let head = request_head(&request("/x?y=1", &accept)).unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /x?y=1 HTTP/1.1\r\nhost: a.test\r\nuser-agent: nw/test\r\naccept: */*\r\n\r\n"
        );
        for target in ["/a b", "/a\r\nX: y", ""] {
            assert!(matches!(request_head(&request(target, &[])), Err(H1Error::Request { .. })));
        }
        let smuggled = [("X-A", "1\r\nX-B: 2".to_owned())];
        assert!(request_head(&request("/", &smuggled)).is_err());
        let chunked = RequestHead { body: true, ..request("/up", &[]) };
        assert!(
            String::from_utf8(request_head(&chunked).unwrap())
                .unwrap()
                .ends_with("transfer-encoding: chunked\r\n\r\n")
        );
        let sized = [("Content-Length", "3".to_owned())];
        let declared = RequestHead { body: true, ..request("/up", &sized) };
        assert!(!String::from_utf8(request_head(&declared).unwrap()).unwrap().contains("chunked"));
    }
}
