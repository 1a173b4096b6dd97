//! The embedded test server's connection part: an echo service over TLS (TCP) and QUIC on the
//! same loopback port, with a throwaway test CA, for `nw doctor`, tests and examples. (Its HTTP
//! part will live with the transfer engine; there is one test server, not several.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

use crate::listener::{self, Handler, Listener};
use crate::tls::{self, TlsError};

/// A running test server; dropping it stops it.
#[derive(Debug)]
pub struct TestServer {
    listener: Listener,
    quic: Listener,
    root: CertificateDer<'static>,
}

impl TestServer {
    /// Starts an echo server on `addr` (use a loopback address and port 0): TLS over TCP, and
    /// QUIC on the same port number over UDP, both with ALPN `nwkit-echo`. Its certificate
    /// names `localhost`, 127.0.0.1 and ::1, issued by a CA made for this server alone.
    pub async fn start(addr: SocketAddr) -> Result<Self, TestServerError> {
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
        let settings = listener::Config {
            tls: Some(config),
            max_connections: 64,
            handshake_timeout: Duration::from_secs(5),
            notsent_lowat: None,
        };
        let listener = Listener::bind(addr, settings.clone(), echo.clone())
            .await
            .map_err(TestServerError::Bind)?;
        let quic = Listener::bind_quic(listener.local_addr(), settings, echo)
            .await
            .map_err(TestServerError::Bind)?;
        Ok(Self { listener, quic, root: ca.root_der() })
    }

    /// The TCP address; QUIC listens on the same address and port over UDP.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The only anchor that trusts this server.
    pub fn root(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    pub async fn shutdown(self) {
        let grace = Duration::from_millis(200);
        tokio::join!(self.listener.shutdown(grace), self.quic.shutdown(grace));
    }
}

/// Why the test server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on loopback: {0}")]
    Bind(#[source] std::io::Error),
}
