//! A [`Framer`] on a live stream: whole messages in and out of any connected byte stream
//! (TCP, TLS, a QUIC stream). Sending waits for the stream to take the bytes, so a slow peer
//! slows the sender (back-pressure) instead of growing a buffer.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::framer::{FrameError, Framer, Framing};

/// Why a framed stream failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FramedError {
    /// The framing was broken: the stream cannot be resynchronised.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The peer closed in the middle of a message.
    #[error("the peer closed with {buffered} bytes of an unfinished message")]
    Truncated {
        /// How many bytes of it had arrived.
        buffered: usize,
    },
}

/// Messages over a stream.
#[derive(Debug)]
pub struct Framed<S> {
    stream: S,
    framer: Framer,
    chunk: Box<[u8]>,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Messages framed as `framing` says over `stream`; refuses a framing that cannot work (an
    /// empty delimiter, a limit the prefix cannot express).
    pub fn new(stream: S, framing: Framing) -> Result<Self, FrameError> {
        let framer = Framer::new(framing)?;
        Ok(Self { stream, framer, chunk: vec![0; 16 * 1024].into_boxed_slice(), out: Vec::new() })
    }

    /// Sends one message, returning once the stream has taken all of it.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), FramedError> {
        self.out.clear();
        self.framer.encode(message, &mut self.out)?;
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next whole message; `None` when the peer closed between messages.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, FramedError> {
        loop {
            if let Some(message) = self.framer.next_message()? {
                return Ok(Some(message));
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                return match self.framer.buffered() {
                    0 => Ok(None),
                    buffered => Err(FramedError::Truncated { buffered }),
                };
            }
            self.framer.push(&self.chunk[..n]);
        }
    }

    /// Half-closes: the peer's `recv` returns `None` after the last message.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// The stream back, with whatever was read but not yet framed dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }
}
