//! The provider contract, version 1: what a packet tunnel provider and the host say to each
//! other. Any language can speak it; the Rust side is [`crate::provider`].
//!
//! # Transport
//!
//! The host starts the provider with a connected Unix stream socket as file descriptor 3 (the
//! number is also in `NW_TUNNEL_FD`). Each message is one JSON object on one line (UTF-8, `\n`
//! at the end), at most [`MAX_LINE`] bytes; an object's `"type"` says what it is. File
//! descriptors travel as SCM_RIGHTS ancillary data on the message that announces them: the TUN
//! device on `start`, a socket on `socket`. A line that is not a message this version knows ends
//! the session with a `stop` whose reason is `provider_failed` and a message that quotes it.
//! Unknown fields in a message are ignored (room for additions within a version); unknown
//! fields in settings are refused, since a misspelt route must never be dropped in silence.
//!
//! # A session
//!
//! 1. host → `{"type":"start","version":1,"interface":"nwtun0","options":{…}}` with the TUN
//!    device's descriptor (IFF_TUN, IFF_NO_PI: one IP packet per read or write).
//! 2. provider → `{"type":"settings","id":1,"settings":{…}}` (any time, as often as needed; a
//!    `null` settings object clears them) → host `{"type":"applied","id":1}` once the kernel's
//!    state reads back equal to what was asked, or `{"type":"error","id":1,"message":…}` with
//!    nothing half-applied.
//! 3. provider → `{"type":"started"}` when the tunnel carries traffic (or
//!    `{"type":"cancel","reason":…,"message":…}` if it cannot start). A provider that says
//!    neither within the start timeout is stopped.
//! 4. Either side, any time: `{"type":"app_message","data":…}`; provider →
//!    `{"type":"reasserting","reasserting":true}` while it reconnects; provider →
//!    `{"type":"open_socket","id":2,"protocol":"udp","family":"ipv6"}` → host
//!    `{"type":"socket","id":2}` with a socket whose traffic never enters the tunnel.
//! 5. host → `{"type":"stop","reason":…}`; the provider answers `{"type":"stopped"}` and exits.
//!    A provider that exits, closes the socket, or misses the stop timeout is stopped by force.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::Settings;

/// The contract's version; a host refuses a provider that asks for another.
pub const VERSION: u32 = 1;
/// The longest line either side accepts, newline included: far more than settings with
/// [`MAX_ROUTES`](crate::settings::MAX_ROUTES) routes need.
pub const MAX_LINE: usize = 1 << 20;
/// The environment variable that names the contract socket's descriptor.
pub const FD_ENV: &str = "NW_TUNNEL_FD";
/// The descriptor the contract socket has in a provider the host starts.
pub const FD: i32 = 3;

/// Why a tunnel stopped: Apple's `NEProviderStopReason`, in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No reason given.
    None,
    /// The user stopped it.
    UserInitiated,
    /// The provider failed: it exited, crashed, broke the contract, or said so.
    ProviderFailed,
    /// No network is available to carry the tunnel.
    NoNetworkAvailable,
    /// The network changed in a way the tunnel cannot follow.
    UnrecoverableNetworkChange,
    /// The provider was disabled.
    ProviderDisabled,
    /// The user logged out.
    UserLogout,
    /// The user switched.
    UserSwitch,
    /// The provider's configuration was removed.
    ConfigurationRemoved,
    /// Another tunnel took over.
    Superseded,
    /// The provider was stopped to be updated.
    AppUpdate,
    /// The provider did not answer in time.
    IdleTimeout,
    /// The configuration failed.
    ConfigurationFailed,
    /// The host is shutting down.
    Sleep,
}

impl StopReason {
    /// The reason as it is written in messages and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::UserInitiated => "user_initiated",
            Self::ProviderFailed => "provider_failed",
            Self::NoNetworkAvailable => "no_network_available",
            Self::UnrecoverableNetworkChange => "unrecoverable_network_change",
            Self::ProviderDisabled => "provider_disabled",
            Self::UserLogout => "user_logout",
            Self::UserSwitch => "user_switch",
            Self::ConfigurationRemoved => "configuration_removed",
            Self::Superseded => "superseded",
            Self::AppUpdate => "app_update",
            Self::IdleTimeout => "idle_timeout",
            Self::ConfigurationFailed => "configuration_failed",
            Self::Sleep => "sleep",
        }
    }
}

/// A socket's transport, in an `open_socket` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketProtocol {
    /// A UDP socket.
    Udp,
    /// A TCP socket, not yet connected.
    Tcp,
}

/// A socket's address family, in an `open_socket` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketFamily {
    /// IPv4 only.
    Ipv4,
    /// IPv6 (dual-stack unless the system forbids it).
    Ipv6,
}

/// What the host sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// Start the tunnel; carries the TUN descriptor.
    Start {
        /// The contract version the host speaks.
        version: u32,
        /// The TUN interface's name.
        interface: String,
        /// The configuration's options, as saved (the provider's own format).
        options: Value,
    },
    /// Settings `id` are in force.
    Applied {
        /// The `settings` message's id.
        id: u64,
    },
    /// A request failed; nothing of it was applied.
    Error {
        /// The request's id.
        id: u64,
        /// What went wrong.
        message: String,
    },
    /// A socket for `open_socket` request `id`; carries the descriptor.
    Socket {
        /// The request's id.
        id: u64,
    },
    /// A message from the app that controls the tunnel.
    AppMessage {
        /// Anything.
        data: Value,
    },
    /// Stop now.
    Stop {
        /// Why.
        reason: StopReason,
    },
}

/// What a provider sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderMessage {
    /// Apply these settings (replacing any earlier ones); `None` clears them.
    Settings {
        /// Echoed in the answer.
        id: u64,
        /// What to apply.
        settings: Option<Settings>,
    },
    /// The tunnel is up.
    Started,
    /// The tunnel is reconnecting (`true`) or back (`false`).
    Reasserting {
        /// Whether it is reconnecting.
        reasserting: bool,
    },
    /// Open a socket that bypasses the tunnel.
    OpenSocket {
        /// Echoed in the answer.
        id: u64,
        /// UDP or TCP.
        protocol: SocketProtocol,
        /// IPv4 or IPv6.
        family: SocketFamily,
    },
    /// A message for the app that controls the tunnel.
    AppMessage {
        /// Anything.
        data: Value,
    },
    /// The provider gives up (`cancelTunnelWithError`).
    Cancel {
        /// Why.
        reason: StopReason,
        /// What happened, for people.
        #[serde(default)]
        message: Option<String>,
    },
    /// The provider has stopped, in answer to `stop`.
    Stopped,
}

/// A line that is not a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than [`MAX_LINE`].
    #[error("a message longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not JSON, or not a message this version knows.
    #[error("not a message of contract version {VERSION}: {error} (in {line:?})")]
    Malformed {
        /// What the JSON reader said.
        error: String,
        /// The start of the line.
        line: String,
    },
    /// The socket failed.
    #[error("the provider socket failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads one message from a complete line (without its newline).
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, ProtocolError> {
    if line.len() >= MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed {
        error: e.to_string(),
        line: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
    })
}

/// Writes one message as a line, newline included.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// Adds bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, without its newline; `TooLong` once the buffer holds
    /// [`MAX_LINE`] bytes with no newline.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) if end < MAX_LINE => {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                Ok(Some(line))
            }
            Some(_) => Err(ProtocolError::TooLong),
            None if self.buf.len() >= MAX_LINE => Err(ProtocolError::TooLong),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_the_documented_shape() {
        let start = HostMessage::Start {
            version: VERSION,
            interface: "nwtun0".into(),
            options: serde_json::json!({"peer": "x"}),
        };
        let line = encode(&start);
        assert_eq!(
            std::str::from_utf8(&line).unwrap_or_default(),
            "{\"type\":\"start\",\"version\":1,\"interface\":\"nwtun0\",\"options\":{\"peer\":\"x\"}}\n"
        );
        let back: HostMessage = decode(&line[..line.len() - 1]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, start);

        let m: ProviderMessage = decode(br#"{"type":"cancel","reason":"no_network_available"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m,
            ProviderMessage::Cancel { reason: StopReason::NoNetworkAvailable, message: None }
        );
        let m: ProviderMessage = decode(br#"{"type":"settings","id":4,"settings":null}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m, ProviderMessage::Settings { id: 4, settings: None });
    }

    #[test]
    fn garbage_and_unknown_messages_are_errors_that_quote_the_line() {
        for bad in [&b"hello"[..], br#"{"type":"launch"}"#, b"\xff\xfe"] {
            let e = decode::<ProviderMessage>(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("not a message of contract version 1"), "{e}");
        }
    }

    #[test]
    fn lines_are_split_and_bounded() {
        let mut b = LineBuffer::default();
        b.extend(b"{\"type\":\"started\"}\n{\"type\":");
        assert_eq!(b.next_line().ok().flatten().as_deref(), Some(&b"{\"type\":\"started\"}"[..]));
        assert!(matches!(b.next_line(), Ok(None)));
        b.extend(b"\"stopped\"}\n");
        assert_eq!(b.next_line().ok().flatten().as_deref(), Some(&b"{\"type\":\"stopped\"}"[..]));

        let mut b = LineBuffer::default();
        b.extend(&vec![b'x'; MAX_LINE]);
        assert!(matches!(b.next_line(), Err(ProtocolError::TooLong)));
    }

    #[test]
    fn stop_reasons_are_written_as_in_messages() {
        for r in [
            StopReason::UserInitiated,
            StopReason::ProviderFailed,
            StopReason::ConfigurationRemoved,
        ] {
            let json = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }
}
