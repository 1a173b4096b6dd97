//! What a connection carries: a byte stream of any kind, and what the layers above IP
//! negotiated on it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::socket::Mptcp;
use crate::tls::Negotiated;

/// A connected byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// What a ready attempt's layers above IP negotiated.
#[derive(Debug, Default)]
pub(crate) struct Stack {
    pub(crate) tls: Option<Negotiated>,
    pub(crate) mptcp: Option<Mptcp>,
    /// The TLS handshake's time, over TCP.
    pub(crate) tls_handshake: Option<Duration>,
}
