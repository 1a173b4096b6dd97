//! Message framing over a byte stream, as pure codecs: the two cases Network framework's
//! `NWProtocolFramer` is most used for — a length prefix, and a delimiter.
//!
//! Feed bytes as they arrive with [`Framer::push`] and take whole messages with
//! [`Framer::next_message`]; write with [`Framer::encode`]. Buffers are bounded by `max_len`:
//! a peer announcing or sending more is an error, never an allocation.

use thiserror::Error;

/// The width of a length prefix (big-endian, network order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// One byte: messages up to 255 bytes.
    U8,
    /// Two bytes: up to 65,535.
    U16,
    /// Four bytes: up to 4 GiB − 1.
    U32,
}

impl Width {
    fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }

    fn max(self) -> usize {
        match self {
            Self::U8 => 0xff,
            Self::U16 => 0xffff,
            Self::U32 => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        }
    }
}

/// How messages are framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Each message is preceded by its length.
    LengthPrefixed {
        /// The prefix's width.
        width: Width,
        /// The largest message accepted or sent.
        max_len: usize,
    },
    /// Each message ends with the delimiter (`b"\n"`, `b"\r\n"`, `b"\0"` …), which is not part
    /// of the message.
    Delimited {
        /// The bytes that end each message.
        delimiter: Vec<u8>,
        /// The largest message accepted or sent, without its delimiter.
        max_len: usize,
    },
}

/// A framing error. The stream should be closed: framing cannot resynchronise.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message (to send, or announced by a prefix) is over the limit.
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer sent more than the limit without a delimiter.
    #[error("no delimiter within the limit of {max} bytes")]
    NoDelimiter {
        /// The limit.
        max: usize,
    },
    /// A message to send contains the delimiter.
    #[error("the message contains the delimiter, so it would arrive as two messages")]
    ContainsDelimiter,
    /// The framing itself cannot work (an empty delimiter, a limit too large for the prefix).
    #[error("invalid framing: {0}")]
    Invalid(&'static str),
}

/// An encoder and a streaming decoder for one framing.
#[derive(Debug, Clone)]
pub struct Framer {
    framing: Framing,
    buf: Vec<u8>,
    /// Delimited: the buffer before here has been searched and holds no delimiter start.
    scanned: usize,
}

impl Framer {
    /// A codec for `framing`; refuses a framing that cannot work.
    pub fn new(framing: Framing) -> Result<Self, FrameError> {
        match &framing {
            Framing::Delimited { delimiter, .. } if delimiter.is_empty() => {
                return Err(FrameError::Invalid("the delimiter is empty"));
            }
            Framing::LengthPrefixed { width, max_len } if *max_len > width.max() => {
                return Err(FrameError::Invalid("max_len does not fit the prefix width"));
            }
            _ => {}
        }
        Ok(Self { framing, buf: Vec::new(), scanned: 0 })
    }

    /// Appends `message`, framed, to `out`.
    pub fn encode(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        match &self.framing {
            Framing::LengthPrefixed { width, max_len } => {
                if message.len() > *max_len {
                    return Err(FrameError::TooLarge { len: message.len(), max: *max_len });
                }
                let len = u32::try_from(message.len())
                    .map_err(|_| FrameError::TooLarge { len: message.len(), max: *max_len })?;
                out.extend_from_slice(&len.to_be_bytes()[4 - width.bytes()..]);
                out.extend_from_slice(message);
            }
            Framing::Delimited { delimiter, max_len } => {
                if message.len() > *max_len {
                    return Err(FrameError::TooLarge { len: message.len(), max: *max_len });
                }
                if find(message, delimiter).is_some() {
                    return Err(FrameError::ContainsDelimiter);
                }
                out.extend_from_slice(message);
                out.extend_from_slice(delimiter);
            }
        }
        Ok(())
    }

    /// Bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match &self.framing {
            Framing::LengthPrefixed { width, max_len } => {
                let n = width.bytes();
                let Some(prefix) = self.buf.get(..n) else { return Ok(None) };
                let mut be = [0u8; 4];
                be[4 - n..].copy_from_slice(prefix);
                let len = usize::try_from(u32::from_be_bytes(be)).unwrap_or(usize::MAX);
                if len > *max_len {
                    return Err(FrameError::TooLarge { len, max: *max_len });
                }
                if self.buf.len() < n + len {
                    return Ok(None);
                }
                let message = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                Ok(Some(message))
            }
            Framing::Delimited { delimiter, max_len } => {
                // Resume the search just before where the last one stopped, in case a
                // delimiter straddled the old end of the buffer.
                let from = self.scanned.saturating_sub(delimiter.len() - 1);
                match find(&self.buf[from..], delimiter) {
                    Some(at) => {
                        let end = from + at;
                        if end > *max_len {
                            return Err(FrameError::TooLarge { len: end, max: *max_len });
                        }
                        let message = self.buf[..end].to_vec();
                        self.buf.drain(..end + delimiter.len());
                        self.scanned = 0;
                        Ok(Some(message))
                    }
                    None if self.buf.len() > *max_len + delimiter.len() => {
                        Err(FrameError::NoDelimiter { max: *max_len })
                    }
                    None => {
                        self.scanned = self.buf.len();
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(width: Width, max_len: usize) -> Framer {
        Framer::new(Framing::LengthPrefixed { width, max_len }).unwrap()
    }

    fn delim(d: &[u8], max_len: usize) -> Framer {
        Framer::new(Framing::Delimited { delimiter: d.to_vec(), max_len }).unwrap()
    }

    fn drain(f: &mut Framer) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| f.next_message().unwrap()).collect()
    }

    #[test]
    fn length_prefixed_round_trip_in_every_width() {
        for width in [Width::U8, Width::U16, Width::U32] {
            let mut f = lp(width, 200);
            let mut wire = Vec::new();
            for m in [&b"hello"[..], b"", &[7u8; 200]] {
                f.encode(m, &mut wire).unwrap();
            }
            f.push(&wire);
            assert_eq!(drain(&mut f), [b"hello".to_vec(), vec![], vec![7u8; 200]]);
            assert_eq!(f.buffered(), 0);
        }
        let mut wire = Vec::new();
        lp(Width::U16, 10).encode(b"ab", &mut wire).unwrap();
        assert_eq!(wire, [0, 2, b'a', b'b'], "network byte order");
    }

    #[test]
    fn limits_are_errors_not_allocations() {
        let mut f = lp(Width::U32, 1024);
        f.push(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge { len: 0xffff_ffff, max: 1024 }));
        assert!(matches!(
            lp(Width::U8, 4).encode(b"12345", &mut Vec::new()),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(Framer::new(Framing::LengthPrefixed { width: Width::U8, max_len: 256 }).is_err());
        assert!(Framer::new(Framing::Delimited { delimiter: vec![], max_len: 1 }).is_err());

        let mut f = delim(b"\n", 4);
        f.push(b"abcdefgh");
        assert_eq!(f.next_message(), Err(FrameError::NoDelimiter { max: 4 }));
        let mut f = delim(b"\n", 4);
        f.push(b"abcde\n");
        assert_eq!(f.next_message(), Err(FrameError::TooLarge { len: 5, max: 4 }));
        assert_eq!(
            delim(b"\n", 9).encode(b"a\nb", &mut Vec::new()),
            Err(FrameError::ContainsDelimiter)
        );
    }

    #[test]
    fn delimited_messages_across_chunk_boundaries() {
        let mut f = delim(b"\r\n", 100);
        let mut got = Vec::new();
        for chunk in [&b"one\r"[..], b"\ntwo", b"\r", b"\n\r\nthree"] {
            f.push(chunk);
            got.extend(drain(&mut f));
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), vec![]]);
        assert_eq!(f.buffered(), 5, "\"three\" waits for its delimiter");
    }

    /// Property: any messages, encoded and delivered in any chunking, decode to themselves.
    #[test]
    fn property_round_trip_under_random_chunking() {
        let mut state: u64 = 0x1234_5678_9abc_def1;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n.max(1)).unwrap()
        };
        for round in 0..500 {
            let mut f = if round % 2 == 0 { lp(Width::U16, 300) } else { delim(b"\r\n", 300) };
            let messages: Vec<Vec<u8>> = (0..rand(8))
                .map(|_| (0..rand(300)).map(|_| b"ab\rc"[rand(4)]).collect::<Vec<u8>>())
                .filter(|m: &Vec<u8>| f.encode(m, &mut Vec::new()).is_ok())
                .collect();
            let mut wire = Vec::new();
            for m in &messages {
                f.encode(m, &mut wire).unwrap();
            }
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let n = 1 + rand(40);
                let end = (at + n).min(wire.len());
                f.push(&wire[at..end]);
                at = end;
                got.extend(drain(&mut f));
            }
            assert_eq!(got, messages);
            assert_eq!(f.buffered(), 0);
        }
    }
}
