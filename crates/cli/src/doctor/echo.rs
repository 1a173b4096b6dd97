//! Doctor's embedded echo server: an echo service over TLS (TCP) and QUIC on the same loopback
//! port, with a throwaway test CA. (The HTTP server doctor downloads from is nw-transfer's.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

use nw_connection::tls::{self, TlsError};
use nw_connection::{Handler, Listener, ListenerConfig};

/// A running test server; dropping it stops it.
#[derive(Debug)]
pub(crate) struct EchoServer {
    listener: Listener,
    quic: Listener,
    root: CertificateDer<'static>,
}

impl EchoServer {
    /// Starts an echo server on `addr` (use a loopback address and port 0): TLS over TCP, and
    /// QUIC on the same port number over UDP, both with ALPN `nwkit-echo`. Its certificate
    /// names `localhost`, 127.0.0.1 and ::1, issued by a CA made for this server alone.
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, EchoServerError> {
        let trust = |e: nw_trust::TrustError| TlsError::Config(format!("test CA: {e}"));
        let ca = nw_trust::ca::TestCa::new("nwkit embedded test server CA").map_err(trust)?;
        let issued = ca.server(&["localhost", "127.0.0.1", "::1"]).map_err(trust)?;
        let key = issued.key().map_err(trust)?;
        let config = tls::server_config(issued.chain, key, &[b"nwkit-echo".to_vec()])?;
        let echo: Handler = Arc::new(|stream, _peer| {
            Box::pin(async move {
                let (mut rd, mut wr) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            })
        });
        let settings = ListenerConfig {
            tls: Some(config),
            max_connections: 64,
            handshake_timeout: Duration::from_secs(5),
            ..ListenerConfig::default()
        };
        let listener = Listener::bind(addr, settings.clone(), echo.clone())
            .await
            .map_err(EchoServerError::Bind)?;
        let quic = Listener::bind_quic(listener.local_addr(), settings, echo)
            .await
            .map_err(EchoServerError::Bind)?;
        Ok(Self { listener, quic, root: ca.root_der() })
    }

    /// The TCP address; QUIC listens on the same address and port over UDP.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The only anchor that trusts this server.
    pub(crate) fn root(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// Stops both listeners, giving connections in flight a moment to finish.
    pub(crate) async fn shutdown(self) {
        let grace = Duration::from_millis(200);
        tokio::join!(self.listener.shutdown(grace), self.quic.shutdown(grace));
    }
}

/// Why the test server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EchoServerError {
    /// The certificate or TLS configuration could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No socket on loopback.
    #[error("cannot listen on loopback: {0}")]
    Bind(#[source] std::io::Error),
}
