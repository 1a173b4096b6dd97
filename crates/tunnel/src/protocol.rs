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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::Settings;

/// The contract's version; a host refuses a provider that asks for another.
pub const VERSION: u32 = 1;
/// The longest line either side accepts, newline included: far more than settings with
/// [`MAX_ROUTES`](crate::settings::MAX_ROUTES) routes need.
pub use nw_provider::MAX_LINE;
/// The framing every provider contract shares.
pub use nw_provider::{LineBuffer, ProtocolError, decode, encode};
/// The environment variable that names the contract socket's descriptor.
pub const FD_ENV: &str = "NW_TUNNEL_FD";
/// The descriptor the contract socket has in a provider the host starts.
pub use nw_provider::FD;

/// Why a provider stopped (shared by every provider contract).
pub use nw_provider::StopReason;

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
            assert!(e.contains("not a message of this contract version"), "{e}");
        }
    }
}
