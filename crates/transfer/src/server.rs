//! The HTTP part of the embedded test server: a directory served over HTTP/3 (quinn and h3),
//! with the validators and byte ranges resumable downloads need — a strong `ETag`,
//! `Last-Modified`, `Accept-Ranges`, single ranges (`bytes=A-`, `A-B`, `-N`) honouring
//! `If-Range`, and 416 for a range past the end. Multiple ranges get the whole file (a 200),
//! which RFC 9110 §14.2 allows.
//!
//! It is for tests, benchmarks and offline measurements on loopback: it serves any readable file
//! under its root to anyone who connects.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What each read of a served file takes.
const CHUNK: usize = 256 << 10;

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pace every response body to at most this many bytes per second (for tests that need a
    /// transfer still running when they act).
    pub rate: Option<u64>,
}

/// A running HTTP/3 server; dropping it closes its endpoint.
#[derive(Debug)]
pub struct H3Server {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("the certificate or key cannot serve HTTP/3: {0}")]
    Tls(String),
    #[error("cannot listen on {addr} (UDP): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot serve it: {source}", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl H3Server {
    /// Serves `root` over HTTP/3 on `addr` (UDP) with `chain` and `key`.
    pub fn start(
        addr: SocketAddr,
        root: &Path,
        (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        options: &Options,
    ) -> Result<Self, ServerError> {
        let root = root
            .canonicalize()
            .map_err(|source| ServerError::Root { root: root.to_owned(), source })?;
        let tls = nw_connection::tls::server_config(chain, key, &[b"h3".to_vec()])
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = endpoint.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let root = Arc::new(root);
        let rate = options.rate;
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let root = root.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(incoming, root, rate).await {
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
    root: Arc<PathBuf>,
    rate: Option<u64>,
) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let mut h3 = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(resolver) = h3.accept().await.map_err(|e| e.to_string())? {
        let root = root.clone();
        tokio::spawn(async move {
            let Ok((request, mut stream)) = resolver.resolve_request().await else { return };
            if let Err(e) = respond(&request, &mut stream, &root, rate).await {
                tracing::debug!("HTTP/3 test server: {} {}: {e}", request.method(), request.uri());
            }
        });
    }
    Ok(())
}

/// The file under `root` that `path` names, refusing anything that climbs out of it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.split('?').next()?.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
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

#[allow(clippy::disallowed_methods, reason = "a server is a driver: the Date header, pacing")]
async fn respond(
    request: &hyper::Request<()>,
    stream: &mut Stream,
    root: &Path,
    rate: Option<u64>,
) -> Result<(), String> {
    let head = |status: StatusCode| hyper::Response::builder().status(status);
    let send_head = async |stream: &mut Stream, response: hyper::http::response::Builder| {
        let response = response
            .header(header::SERVER, concat!("nw-testserver/", env!("CARGO_PKG_VERSION")))
            .header(header::DATE, httpdate::fmt_http_date(std::time::SystemTime::now()))
            .body(())
            .map_err(|e| e.to_string())?;
        stream.send_response(response).await.map_err(|e| e.to_string())
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        send_head(stream, head(StatusCode::METHOD_NOT_ALLOWED).header(header::ALLOW, "GET, HEAD"))
            .await?;
        return stream.finish().await.map_err(|e| e.to_string());
    }
    let Some(path) = resolve(root, request.uri().path()) else {
        send_head(stream, head(StatusCode::NOT_FOUND)).await?;
        return stream.finish().await.map_err(|e| e.to_string());
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| e.to_string())?;
    let meta = file.metadata().await.map_err(|e| e.to_string())?;
    let len = meta.len();
    let modified = meta.modified().ok();
    let since_epoch = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let tag = etag(len, since_epoch);
    let header =
        |name: header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    // If-Range (RFC 9110 §13.1.5): the range holds only while the validator still matches.
    let range_asked = match header(header::IF_RANGE) {
        Some(v) if v != tag => None,
        _ => header(header::RANGE),
    };
    let mut response = head(StatusCode::OK)
        .header(header::ETAG, tag.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(m) = modified {
        response = response.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    let (start, end) = match range(range_asked, len) {
        Err(()) => {
            let response = response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"));
            send_head(stream, response).await?;
            return stream.finish().await.map_err(|e| e.to_string());
        }
        Ok(Some((start, end))) => {
            response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (start, end + 1)
        }
        Ok(None) => (0, len),
    };
    let response = response.header(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    send_head(stream, response).await?;
    if request.method() == Method::GET && end > start {
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| e.to_string())?;
        let mut left = end - start;
        let pace = rate.map(|r| Duration::from_secs_f64(CHUNK as f64 / r.max(1) as f64));
        while left > 0 {
            let mut buf = BytesMut::with_capacity(CHUNK);
            let n = file.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("{} ended early", path.display()));
            }
            buf.truncate(usize::try_from(left).unwrap_or(usize::MAX).min(n));
            left -= buf.len() as u64;
            stream.send_data(buf.freeze()).await.map_err(|e| e.to_string())?;
            if let Some(pace) = pace {
                tokio::time::sleep(pace).await;
            }
        }
    }
    stream.finish().await.map_err(|e| e.to_string())
}
