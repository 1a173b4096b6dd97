//! Flows as providers see them: the 5-tuple, the direction, the process behind the flow and
//! its stable identity, and the verdicts a provider can give.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A flow's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP: the flow starts with a SYN.
    Tcp,
    /// UDP: the flow starts with its first datagram.
    Udp,
}

impl Transport {
    /// The name used in rules, messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// Who started a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A process on this host opened it.
    Outbound,
    /// A remote peer opened it to a process listening here.
    Inbound,
}

/// The five values that name a flow, from this host's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    /// TCP or UDP.
    pub transport: Transport,
    /// This host's address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.transport.as_str(), self.local, self.remote)
    }
}

/// The process behind a flow, read from the kernel when the flow's first packet was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Its process id.
    pub pid: u32,
    /// The executable's path (as the kernel has it; ` (deleted)` when it was replaced).
    pub executable: String,
    /// Its command line.
    pub command_line: Vec<String>,
    /// The socket owner's user id.
    pub uid: u32,
    /// Its cgroup (v2 path, e.g. `/system.slice/nginx.service`).
    pub cgroup: String,
    /// An identity that survives updates of the executable: see [`nw_lnp::identity`].
    pub identity: String,
}

/// A new flow, as a provider is asked about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The host's number for the flow, unique while the host runs.
    pub id: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// Who opened it.
    pub direction: Direction,
    /// This host's address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// The process behind it; `None` when it could not be found (the socket was gone before
    /// the host looked, or it belongs to the kernel).
    #[serde(default)]
    pub process: Option<Process>,
    /// The peer's host name, when the host knows it: from the flow's first bytes (a TLS
    /// server name, an HTTP Host) once they are read, else the name a DNS answer to this host
    /// gave the peer's address (outbound flows only).
    #[serde(default)]
    pub host: Option<String>,
}

impl Flow {
    /// The flow's key.
    pub fn key(&self) -> FlowKey {
        FlowKey { transport: self.transport, local: self.local, remote: self.remote }
    }
}

/// A provider's answer about a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum FlowVerdict {
    /// Let the flow through; the rest of it never leaves the kernel.
    Allow,
    /// Refuse the flow: the process is told at once (a TCP connect is reset and fails with
    /// "connection refused"; a UDP datagram is answered with ICMP administratively
    /// prohibited), never left to hang.
    Drop,
    /// Look at the flow's first bytes before deciding (TCP only; a UDP flow given this verdict
    /// gets the failure policy). The host holds the flow's first `peek_outbound` bytes, and
    /// the peer's first `peek_inbound`, back, shows them in `data` messages, and lets none of
    /// them through until the data verdict. Either end may have opened the flow.
    FilterData {
        /// Bytes to peek at, from this host to the peer (at most [`MAX_PEEK`]; more is
        /// taken as that). 0: this host's bytes go through as they come, when
        /// `peek_inbound` is not 0; otherwise 0 is taken as 1.
        peek_outbound: u32,
        /// Bytes to peek at, from the peer to this host (at most [`MAX_PEEK`]). 0 (the
        /// default): the peer's bytes are not held.
        #[serde(default)]
        peek_inbound: u32,
    },
}

/// The most bytes a provider may ask to peek at in one step. The bytes a flow holds back are
/// bounded by it (and by the sender's window): a provider cannot make the host buffer a
/// stream.
pub const MAX_PEEK: u32 = 64 * 1024;

/// A flow's bytes shown to a provider that asked to filter its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// The flow's id, from `new_flow`.
    pub id: u64,
    /// Whose bytes: `outbound`, this host's to the peer; `inbound`, the peer's to this host.
    /// The data verdict about them passes and peeks in that direction.
    pub direction: Direction,
    /// Where `bytes` starts in that direction's stream (0 is its first byte). Everything
    /// before it has passed.
    pub offset: u64,
    /// The bytes held back, from `offset`: as many as the provider asked to peek at, or fewer
    /// when the sender stopped sending for now (it waits for an answer) or `closed`.
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
    /// The sender closed its side after these bytes: no more will come.
    #[serde(default)]
    pub closed: bool,
}

/// What a closed flow carried, reported to the provider that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The flow's id, from `new_flow`.
    pub id: u64,
    /// Bytes this host sent: over TCP those the peer acknowledged, as the kernel counts them
    /// (the SYN and the FIN count one each); over UDP the datagrams' payload bytes.
    pub bytes_out: u64,
    /// Bytes received from the peer (over TCP its FIN counts one).
    pub bytes_in: u64,
    /// Segments (UDP: datagrams) sent.
    pub segments_out: u64,
    /// Segments (UDP: datagrams) received.
    pub segments_in: u64,
}

/// A provider's answer about a flow's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DataVerdict {
    /// Let the rest of the flow through, both ways; it never leaves the kernel again.
    Allow,
    /// Refuse the flow: nothing more of it reaches either end, and both are reset.
    Drop,
    /// Let `pass` bytes from the data's offset through (they may run past what was shown),
    /// then hold that direction again and show the `peek` bytes after them.
    Pass {
        /// Bytes from the data's `offset` to let through.
        pass: u64,
        /// Bytes after those to peek at next (1 to [`MAX_PEEK`]).
        peek: u32,
    },
}

/// Bytes as base64 text in JSON (RFC 4648 §4, with padding).
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_have_a_documented_shape() {
        let v: FlowVerdict = serde_json::from_str(
            r#"{"verdict":"filter_data","peek_outbound":1024,"peek_inbound":0}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, FlowVerdict::FilterData { peek_outbound: 1024, peek_inbound: 0 });
        assert_eq!(
            serde_json::to_string(&FlowVerdict::Drop).ok().as_deref(),
            Some(r#"{"verdict":"drop"}"#)
        );
        let v: FlowVerdict =
            serde_json::from_str(r#"{"verdict":"filter_data","peek_outbound":1024}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, FlowVerdict::FilterData { peek_outbound: 1024, peek_inbound: 0 });
        let d: DataVerdict = serde_json::from_str(r#"{"verdict":"pass","pass":5,"peek":1024}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d, DataVerdict::Pass { pass: 5, peek: 1024 });
        let data = Data {
            id: 3,
            direction: Direction::Outbound,
            offset: 0,
            bytes: b"GET".to_vec(),
            closed: false,
        };
        let text = serde_json::to_string(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            text,
            r#"{"id":3,"direction":"outbound","offset":0,"bytes":"R0VU","closed":false}"#
        );
        assert_eq!(serde_json::from_str::<Data>(&text).ok(), Some(data));
        assert!(serde_json::from_str::<Data>(&text.replace("R0VU", "R0V!")).is_err());
    }
}
