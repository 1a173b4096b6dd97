//! One HTTP connection: established by nw-connection (the Happy Eyeballs race, TLS through the
//! trust seam), then HTTP/2 when ALPN chose `h2` and HTTP/1.1 otherwise, over hyper.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use nw_connection::driver::{self, Params, Report, Resolver};
use nw_connection::endpoint::Url;

use crate::TransferError;

/// hyper's read buffer for HTTP/1.1: large reads keep the syscall count down.
const H1_READ_BUFFER: usize = 1 << 20;
/// HTTP/2 flow-control windows: large enough that a loopback or long fat path is not
/// window-limited (hyper's default stream window is 64 KiB).
const H2_STREAM_WINDOW: u32 = 16 << 20;
const H2_CONNECTION_WINDOW: u32 = 32 << 20;

/// The negotiated HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    #[serde(rename = "http/1.1")]
    Http11,
    #[serde(rename = "h2")]
    H2,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// An established HTTP connection.
pub(crate) struct Connection {
    sender: Sender,
    pub(crate) protocol: Protocol,
    pub(crate) report: Report,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

/// Connects to `url`'s host and speaks HTTP over it.
pub(crate) async fn connect(
    url: &Url,
    params: &Params,
    resolver: Arc<Resolver>,
) -> Result<Connection, TransferError> {
    let connected = driver::connect(&url.host, url.port, params, resolver)
        .await
        .map_err(|e| TransferError::Connect(Box::new(e)))?;
    let report = connected.report;
    let io = TokioIo::new(connected.stream);
    let h2 = report.tls.as_ref().and_then(|t| t.alpn.as_deref()) == Some("h2");
    let handshake_error = |e: hyper::Error| TransferError::Http(format!("HTTP handshake: {e}"));
    let (sender, protocol) = if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .keep_alive_interval(Duration::from_secs(20))
            .handshake(io)
            .await
            .map_err(handshake_error)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        (Sender::H2(sender), Protocol::H2)
    } else {
        let (sender, conn) = http1::Builder::new()
            .read_buf_exact_size(Some(H1_READ_BUFFER))
            .handshake(io)
            .await
            .map_err(handshake_error)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/1.1 connection ended: {e}");
            }
        });
        (Sender::H1(sender), Protocol::Http11)
    };
    Ok(Connection { sender, protocol, report })
}

impl Connection {
    /// Sends a GET for `url` with `headers`.
    pub(crate) async fn get(
        &mut self,
        url: &Url,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<Incoming>, TransferError> {
        let authority = authority(url);
        let uri = match self.sender {
            // HTTP/1.1 sends the origin form with a Host header; HTTP/2 the absolute form
            // (hyper turns it into :scheme, :authority and :path).
            Sender::H1(_) => url.path.clone(),
            Sender::H2(_) => format!("{}://{authority}{}", url.scheme, url.path),
        };
        let mut request = hyper::Request::get(uri.as_str());
        if matches!(self.sender, Sender::H1(_)) {
            request = request.header(hyper::header::HOST, authority.as_str());
        }
        request =
            request.header(hyper::header::USER_AGENT, concat!("nw/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| {
            TransferError::Http(format!("{}: cannot form a request for it: {e}", url.path))
        })?;
        let response = match &mut self.sender {
            Sender::H1(s) => s.send_request(request).await,
            Sender::H2(s) => s.send_request(request).await,
        };
        response.map_err(|e| TransferError::Http(format!("request failed: {e}")))
    }
}

/// `host[:port]`, the port only when it is not the scheme's default; IPv6 in brackets.
fn authority(url: &Url) -> String {
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let default = match url.scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    if url.port == default { host } else { format!("{host}:{}", url.port) }
}
