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
    /// The peer's host name, when the host knows it.
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
    /// Look at the flow's first bytes before deciding. Not served by this host yet: it applies
    /// the failure policy and says so.
    FilterData {
        /// Bytes to peek at, from this host to the peer.
        peek_outbound: u32,
        /// Bytes to peek at, from the peer.
        peek_inbound: u32,
    },
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
    }
}
