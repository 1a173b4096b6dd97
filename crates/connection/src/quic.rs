//! QUIC attempts (quinn, aws-lc-rs): the whole stack — QUIC and its TLS 1.3 handshake with the
//! certificate check — is up before an attempt counts as ready. A connection made by
//! `driver::connect` then carries one bidirectional stream, which is what `nw cat --quic`
//! relays (listeners serve a QUIC connection through the first bidirectional stream its client
//! opens); one made by `driver::connect_quic` is handed over whole, for HTTP/3.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::crypto::rustls::{HandshakeData, QuicClientConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::happy_eyeballs::AttemptError;
use crate::socket::{Bind, udp_socket};
use crate::stream::{Io, Stack};
use crate::tls::Negotiated;

/// An established QUIC connection with its endpoint (which must outlive it): what HTTP/3 runs
/// on.
#[derive(Debug)]
pub struct QuicConnection {
    /// The QUIC connection: open streams on it.
    pub connection: quinn::Connection,
    /// The endpoint (socket) it runs on; it must outlive the connection.
    pub endpoint: quinn::Endpoint,
    /// The connection's qlog, when `QLOGDIR` is set: layers above add their events to it.
    pub qlog: Option<crate::qlog::Qlog>,
}

/// One QUIC handshake with `addr`, authenticating `server_name`; its socket bound as `bind` says.
pub(crate) async fn handshake(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    server_name: String,
    bind: &Bind,
) -> Result<(QuicConnection, Stack), AttemptError> {
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| AttemptError::Tls(format!("this TLS configuration cannot carry QUIC: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let qlog =
        crate::qlog::Qlog::from_env("client", &format!("nw: QUIC to {server_name} at {addr}"));
    if let Some((_, stream)) = &qlog {
        let mut transport = quinn::TransportConfig::default();
        transport.qlog_stream(Some(stream.clone()));
        config.transport_config(Arc::new(transport));
    }
    let socket_error = |e: std::io::Error| AttemptError::Other(format!("QUIC socket: {e}"));
    let socket = udp_socket(addr, bind).map_err(socket_error)?;
    // Connected, so the kernel reports an ICMP port unreachable for it (ECONNREFUSED as the
    // socket's error), which `refused` watches for: the attempt fails at once instead of at its
    // timeout. quinn itself ignores such errors.
    socket.connect(addr).await.map_err(socket_error)?;
    let socket = socket.into_std().map_err(socket_error)?;
    let watched = socket.try_clone().map_err(socket_error)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(socket_error)?;
    let connecting = endpoint
        .connect_with(config, addr, &server_name)
        .map_err(|e| AttemptError::Other(format!("QUIC: {e}")))?;
    let connection = tokio::select! {
        done = connecting => done.map_err(|e| error(&e))?,
        () = refused(watched) => return Err(AttemptError::Refused),
    };
    let alpn = connection
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let negotiated = Negotiated {
        version: "QUICv1 (TLSv1_3)".into(),
        cipher: "TLS13".into(),
        alpn,
        server_name,
        // quinn does not say whether the handshake resumed.
        resumed: None,
    };
    let qlog = qlog.map(|(q, _)| q);
    Ok((
        QuicConnection { connection, endpoint, qlog },
        Stack { tls: Some(negotiated), ..Stack::default() },
    ))
}

/// Resolves when the kernel reports the peer's host refused `socket` (an ICMP port or
/// protocol unreachable on a connected UDP socket: `SO_ERROR` ECONNREFUSED); never otherwise.
/// Taking the error clears it, so the endpoint sharing the socket never sees it.
async fn refused(socket: std::net::UdpSocket) {
    use tokio::io::unix::AsyncFd;
    // SAFETY: the UdpSocket owns its descriptor, keeps it open until it is dropped with the
    // AsyncFd, and always returns the same one from as_raw_fd.
    let registered = unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::ERROR) };
    let Ok(fd) = registered else {
        return std::future::pending().await;
    };
    loop {
        let Ok(mut ready) = fd.ready(tokio::io::Interest::ERROR).await else {
            return std::future::pending().await;
        };
        match fd.get_ref().take_error() {
            Ok(Some(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => ready.clear_ready(),
        }
    }
}

/// One QUIC attempt: the handshake, then the one bidirectional stream the connection carries.
pub(crate) async fn attempt(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    server_name: String,
    bind: &Bind,
) -> Result<(Box<dyn Io>, Stack), AttemptError> {
    let (quic, stack) = handshake(addr, tls, server_name, bind).await?;
    let (send, recv) = quic.connection.open_bi().await.map_err(|e| error(&e))?;
    Ok((Box::new(QuicStream::new(send, recv, quic.connection, quic.endpoint)), stack))
}

/// A TLS alert about a certificate, as QUIC carries it: CRYPTO_ERROR 0x0100 + the alert
/// (RFC 9001 §4.8), for bad_certificate (42) to unknown_ca (48) and certificate_required (116)
/// (RFC 8446 §6.2).
fn certificate_alert(code: quinn::TransportErrorCode) -> bool {
    [42, 43, 44, 45, 46, 48, 116].into_iter().any(|a| code == quinn::TransportErrorCode::crypto(a))
}

fn error(e: &quinn::ConnectionError) -> AttemptError {
    match e {
        quinn::ConnectionError::TimedOut => AttemptError::TimedOut,
        // Our side refused the server's certificate.
        quinn::ConnectionError::TransportError(t) if certificate_alert(t.code) => {
            AttemptError::Untrusted(format!("the certificate is not trusted (QUIC): {t}"))
        }
        quinn::ConnectionError::TransportError(t) => {
            AttemptError::Tls(format!("QUIC handshake: {t}"))
        }
        // The server refused ours.
        quinn::ConnectionError::ConnectionClosed(c) if certificate_alert(c.error_code) => {
            AttemptError::Untrusted(format!("the server refused our certificate (QUIC): {c}"))
        }
        // RFC 9000 §20.1: the server refused (at its limit, or shutting down).
        quinn::ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            AttemptError::Refused
        }
        quinn::ConnectionError::ConnectionClosed(c) => {
            AttemptError::Other(format!("QUIC: the peer closed: {c}"))
        }
        other => AttemptError::Other(format!("QUIC: {other}")),
    }
}

type Finishing =
    Pin<Box<dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>> + Send + Sync>>;

/// A QUIC connection's one bidirectional stream, as a byte stream. Holds the connection and
/// its endpoint, so both live as long as the stream.
pub(crate) struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// After a shutdown: resolves once the peer has acknowledged everything we sent, so
    /// dropping the connection afterwards cannot lose the tail of the data.
    finishing: Option<Finishing>,
    _conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl QuicStream {
    pub(crate) fn new(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
    ) -> Self {
        Self { send, recv, finishing: None, _conn: conn, _endpoint: endpoint }
    }
}

impl std::fmt::Debug for QuicStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicStream")
            .field("send", &self.send.id())
            .field("finishing", &self.finishing.is_some())
            .finish_non_exhaustive()
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf).map_err(std::io::Error::from)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    /// Finishes the stream (the peer reads EOF: a half-close) and completes once the peer has
    /// acknowledged all of it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.finishing.is_none() {
            if let Err(e) = self.send.finish() {
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::NotConnected, e)));
            }
            let acked = self.send.stopped();
            self.finishing = Some(Box::pin(acked));
        }
        let Some(finishing) = self.finishing.as_mut() else { return Poll::Ready(Ok(())) };
        finishing.as_mut().poll(cx).map(|r| match r {
            Ok(_) => Ok(()),
            Err(e) => Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e)),
        })
    }
}
