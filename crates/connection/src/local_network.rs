//! Local network privacy at connect time: before a connection races, each local destination
//! (an on-link, link-local, multicast or broadcast address, a `.local` name; see
//! [`nw_lnp::classify`]) is checked against the permission store for the app. A denied one is
//! never attempted, and a connection whose every destination was denied fails with
//! [`ConnectError::LocalNetworkProhibited`](crate::driver::ConnectError::LocalNetworkProhibited)
//! — "local network prohibited", never a generic no-route error.
//!
//! Internet-bound destinations pay one classification against the path reading the connection
//! already has: no file is read and no thread is woken for them.

use std::net::IpAddr;
use std::sync::Arc;

pub(crate) use nw_lnp::{Paths, Verdict};

/// How connections are judged by local network privacy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNetwork {
    /// Where the permission store and the administrator's policy are (by default from
    /// `NW_LNP_STORE` and `NW_LNP_POLICY`, else `/var/lib/nwkit/lnp.toml` and
    /// `/etc/nwkit/lnp.toml`).
    pub paths: Paths,
    /// The app the connection is made for, as [`nw_lnp::identity`] names it. `None`: this
    /// process. A service that connects on an app's behalf names the app here, so the app is
    /// judged, not the service.
    pub identity: Option<String>,
}

impl Default for LocalNetwork {
    fn default() -> Self {
        Self { paths: Paths::from_env(), identity: None }
    }
}

/// The gate for one connection: the path reading it classifies against, and the app.
#[derive(Debug)]
pub(crate) struct Gate {
    settings: LocalNetwork,
    reading: Option<Arc<nw_path::Reading>>,
    /// The connection's time limit: an answer (a prompt hook that hangs) is not awaited past it.
    deadline: tokio::time::Instant,
    /// The destinations it refused, in order.
    pub(crate) refused: Vec<Verdict>,
    /// Why the store could not be read, when that refused a destination.
    pub(crate) error: Option<String>,
    /// Outbound for a connection; inbound for a peer of a listener.
    direction: nw_lnp::Direction,
}

impl Gate {
    /// A gate over the process's latest path reading (none when the path cannot be read: then
    /// only multicast, broadcast, link-local and `.local` are known to be local), answering
    /// by `deadline`.
    pub(crate) async fn new(
        settings: &LocalNetwork,
        deadline: tokio::time::Instant,
        direction: nw_lnp::Direction,
    ) -> Self {
        let reading = match nw_path::PathService::shared() {
            Ok(service) => service.reading().await.ok(),
            Err(_) => None,
        };
        Self {
            settings: settings.clone(),
            reading,
            deadline,
            refused: Vec::new(),
            error: None,
            direction,
        }
    }

    /// Whether `ip` may be reached; a refusal is kept in `refused`.
    pub(crate) async fn address(&mut self, ip: IpAddr) -> bool {
        let locality = match &self.reading {
            Some(r) => nw_lnp::classify(ip, &r.snapshot),
            None => nw_lnp::classify(ip, &nw_path::Snapshot::default()),
        };
        if !locality.is_local() {
            return true;
        }
        self.ask(ip.to_string(), locality).await
    }

    /// Whether the name may be looked up and reached before its addresses are known (a
    /// `.local` name is the local network already).
    pub(crate) async fn name(&mut self, name: &str) -> bool {
        let locality = nw_lnp::classify_name(name);
        if !locality.is_local() {
            return true;
        }
        self.ask(name.to_owned(), locality).await
    }

    /// The addresses that may be reached, in their order.
    pub(crate) async fn filter(&mut self, addrs: Vec<IpAddr>) -> Vec<IpAddr> {
        let mut kept = Vec::with_capacity(addrs.len());
        for ip in addrs {
            if self.address(ip).await {
                kept.push(ip);
            }
        }
        kept
    }

    /// Asks the store, off the runtime (it reads files and may run the prompt hook). A store
    /// that cannot be read refuses, with the reason in the log: never "allow all".
    async fn ask(&mut self, destination: String, locality: nw_lnp::Locality) -> bool {
        let settings = self.settings.clone();
        let shown = destination.clone();
        let (refused_locality, direction) = (locality.clone(), self.direction);
        let asked = tokio::time::timeout_at(
            self.deadline,
            tokio::task::spawn_blocking(move || {
                let mut who = nw_lnp::identity::of_self().clone();
                if let Some(id) = settings.identity {
                    who.identity = id;
                }
                let verdict =
                    nw_lnp::permit(&settings.paths, &who, &destination, &locality, direction)
                        .map_err(|e| e.to_string());
                (who.identity, verdict)
            }),
        )
        .await;
        let (identity, why) = match asked {
            Ok(Ok((_, Ok(verdict)))) if verdict.allowed => return true,
            Ok(Ok((_, Ok(verdict)))) => {
                self.refused.push(verdict);
                return false;
            }
            Ok(Ok((identity, Err(why)))) => (identity, why),
            Ok(Err(e)) => (String::new(), format!("the local network check did not finish: {e}")),
            // The prompt goes on asking on its thread; an answer is kept for the next time.
            // (The identity was read on that thread already; this reads the cached copy.)
            Err(_) => (
                self.settings
                    .identity
                    .clone()
                    .unwrap_or_else(|| nw_lnp::identity::of_self().identity.clone()),
                "nobody answered within the connection's time limit (the prompt hook is still asking; its answer is kept for next time)".into(),
            ),
        };
        tracing::debug!("{why}");
        self.error = Some(why);
        self.refused.push(Verdict {
            allowed: false,
            identity,
            destination: shown,
            locality: refused_locality,
            by: nw_lnp::store::Source::Default,
        });
        false
    }
}

/// Why a peer may not be served: see [`LocalNetwork::check_peer`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("not serving {peer}: local network prohibited: {}", explain(.refused, .error.as_deref()))]
pub struct PeerRefused {
    /// The peer, as its address is (an IPv4 peer of a dual-stack socket as IPv4).
    pub peer: IpAddr,
    /// The app, the peer, why it is local and what decided.
    pub refused: Vec<Verdict>,
    /// Why the permission store could not be read, when that is what refused.
    pub error: Option<String>,
}

impl LocalNetwork {
    /// Whether this app may serve a peer at `ip` that reached one of its sockets: the check a
    /// connection to the peer would meet, made inbound (the hook is told
    /// `NW_LNP_DIRECTION=inbound`, and a denial is logged as inbound). Loopback, this host's
    /// addresses and peers beyond a router are served without reading a file; an IPv4 peer
    /// of a dual-stack socket is judged as IPv4. An answer not given within `within` (a
    /// prompt hook still asking) refuses.
    ///
    /// [`Listener`](crate::Listener) asks this for every TCP and QUIC peer; a server of its
    /// own sockets (UDP, say) asks it before it answers a new peer.
    pub async fn check_peer(
        &self,
        ip: IpAddr,
        within: std::time::Duration,
    ) -> Result<(), PeerRefused> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Ok(());
        }
        #[allow(clippy::disallowed_methods, reason = "the check's deadline")]
        let deadline = tokio::time::Instant::now() + within;
        let mut gate = Gate::new(self, deadline, nw_lnp::Direction::Inbound).await;
        if gate.address(ip).await {
            return Ok(());
        }
        Err(PeerRefused { peer: ip, refused: gate.refused, error: gate.error })
    }
}

/// The refusal in words: who may not reach what, why it is local, and what decided.
pub(crate) fn explain(refused: &[Verdict], error: Option<&str>) -> String {
    let Some(first) = refused.first() else {
        return error.unwrap_or("the local network check refused").to_owned();
    };
    let by = match (error, first.by) {
        (Some(e), _) => e.to_owned(),
        (None, nw_lnp::store::Source::Policy) => "the administrator's policy denies it".into(),
        (None, nw_lnp::store::Source::Store) => "the permission store denies it".into(),
        (None, nw_lnp::store::Source::Prompt) => "the prompt was answered no".into(),
        // The exemption only allows; named all the same.
        (None, nw_lnp::store::Source::System) => "the host's services' exemption".into(),
        (None, nw_lnp::store::Source::Default) => {
            "nobody has decided for this app and there is no one to ask".into()
        }
    };
    let more = match refused.len() {
        1 => String::new(),
        n => format!(" (and {} more of its addresses)", n - 1),
    };
    format!(
        "{} may not reach {}, {}{more}: {by}",
        first.identity, first.destination, first.locality
    )
}
