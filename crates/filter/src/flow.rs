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
    /// An identity that survives updates of the executable: see [`identity`].
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

/// An identity for a process that survives updates of its executable, from the strongest
/// evidence there is: a Flatpak or snap application id or a systemd unit (from the cgroup
/// path), else the executable's path. Never a hash of the binary.
///
/// Written `flatpak:ID`, `snap:NAME.APP`, `unit:NAME.service` or `exe:PATH`.
pub fn identity(executable: &str, cgroup: &str) -> String {
    for part in cgroup.rsplit('/') {
        // Flatpak: app-flatpak-org.example.App-1234.scope
        if let Some(rest) = part.strip_prefix("app-flatpak-")
            && let Some(id) = rest.strip_suffix(".scope").and_then(|r| r.rsplit_once('-'))
        {
            return format!("flatpak:{}", id.0);
        }
        // snap: snap.firefox.firefox-<uuid>.scope (or snap.NAME.APP.service)
        if let Some(rest) = part.strip_prefix("snap.") {
            let mut it = rest.splitn(3, '.');
            if let (Some(name), Some(app)) = (it.next(), it.next()) {
                let app = app.split('-').next().unwrap_or(app);
                return format!("snap:{name}.{app}");
            }
        }
        if part.ends_with(".service") && part != "user@.service" && !part.starts_with("user@") {
            return format!("unit:{part}");
        }
    }
    let exe = executable.strip_suffix(" (deleted)").unwrap_or(executable);
    format!("exe:{exe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_prefer_what_survives_an_update() {
        let cases = [
            ("/usr/bin/curl", "/user.slice/user-0.slice/session-3.scope", "exe:/usr/bin/curl"),
            ("/usr/bin/curl (deleted)", "/", "exe:/usr/bin/curl"),
            ("/usr/sbin/nginx", "/system.slice/nginx.service", "unit:nginx.service"),
            (
                "/app/bin/x",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.gnome.Maps-4242.scope",
                "flatpak:org.gnome.Maps",
            ),
            (
                "/snap/firefox/123/usr/lib/firefox/firefox",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-9c1f.scope",
                "snap:firefox.firefox",
            ),
            (
                "/usr/lib/systemd/systemd",
                "/user.slice/user-1000.slice/user@1000.service/init.scope",
                "exe:/usr/lib/systemd/systemd",
            ),
        ];
        for (exe, cgroup, want) in cases {
            assert_eq!(identity(exe, cgroup), want, "{exe} in {cgroup}");
        }
    }

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
