//! The provider side of the contract in Rust: implement [`Provider`], call [`run`].
//!
//! ```no_run
//! use nw_tunnel::provider::{self, AsyncDevice, Provider, Tunnel};
//! use nw_tunnel::{Settings, StopReason};
//!
//! struct Sink;
//!
//! impl Provider for Sink {
//!     async fn start(
//!         &mut self,
//!         tunnel: Tunnel,
//!         device: AsyncDevice,
//!         _options: serde_json::Value,
//!     ) -> Result<(), String> {
//!         let settings: Settings = serde_json::from_str(
//!             r#"{"addresses":["10.8.0.2/24"],"included_routes":["10.8.0.0/24"]}"#,
//!         )
//!         .map_err(|e| e.to_string())?;
//!         tunnel.apply(Some(settings)).await.map_err(|e| e.to_string())?;
//!         tokio::spawn(async move {
//!             let mut packet = vec![0u8; 65536];
//!             while device.recv(&mut packet).await.is_ok() {} // a real provider forwards it
//!         });
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let reason = provider::run(Sink).await;
//!     eprintln!("stopped: {reason:?}");
//! }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::fdpass;
use crate::protocol::{
    self, FD_ENV, HostMessage, LineBuffer, ProtocolError, ProviderMessage, SocketFamily,
    SocketProtocol, StopReason, VERSION,
};
use crate::settings::Settings;

/// The tunnel's packet flow: one IP packet per `recv` or `send`.
pub use tun_rs::AsyncDevice;

/// A packet tunnel provider.
pub trait Provider: Send + 'static {
    /// Starts the tunnel: apply settings through `tunnel`, move packets on `device` (one IP
    /// packet per read or write), return once traffic can flow. An error cancels the tunnel
    /// with reason `provider_failed` and the error as its message.
    fn start(
        &mut self,
        tunnel: Tunnel,
        device: AsyncDevice,
        options: Value,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Stops the tunnel; after it returns the runner says `stopped` and returns.
    fn stop(&mut self, reason: StopReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }

    /// A message from the app that controls the tunnel.
    fn app_message(&mut self, data: Value) -> impl Future<Output = ()> + Send {
        let _ = data;
        async {}
    }
}

/// The provider's handle on the host: settings, sockets, status. Cloneable.
#[derive(Debug, Clone)]
pub struct Tunnel {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    interface: std::sync::OnceLock<String>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Requests waiting for an answer; `None` once the reader has stopped (no answer comes).
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
enum Reply {
    Applied,
    Error(String),
    Socket(OwnedFd),
}

/// A request the host refused, or a host that went away.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The host refused the request.
    #[error("the host refused: {0}")]
    Refused(String),
    /// The contract socket closed or broke.
    #[error("the host is gone: {0}")]
    HostGone(String),
    /// The host broke the contract.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The provider was not started by a host (no contract socket).
    #[error("no contract socket: {0} (a provider is started by `nw tunnel up --provider`)")]
    NotHosted(String),
}

impl Tunnel {
    /// The TUN interface's name.
    pub fn interface(&self) -> &str {
        self.shared.interface.get().map_or("", String::as_str)
    }

    /// Applies settings (replacing earlier ones; `None` clears them) and returns once the
    /// kernel's state reads back equal to them.
    pub async fn apply(&self, settings: Option<Settings>) -> Result<(), ProviderError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        match self.request(id, ProviderMessage::Settings { id, settings }).await? {
            Reply::Applied => Ok(()),
            Reply::Error(e) => Err(ProviderError::Refused(e)),
            Reply::Socket(_) => {
                Err(ProviderError::HostGone("answered settings with a socket".into()))
            }
        }
    }

    /// A socket whose traffic never enters the tunnel (for talking to the tunnel's server).
    pub async fn open_socket(
        &self,
        protocol: SocketProtocol,
        family: SocketFamily,
    ) -> Result<OwnedFd, ProviderError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        match self.request(id, ProviderMessage::OpenSocket { id, protocol, family }).await? {
            Reply::Socket(fd) => Ok(fd),
            Reply::Error(e) => Err(ProviderError::Refused(e)),
            Reply::Applied => {
                Err(ProviderError::HostGone("answered a socket request oddly".into()))
            }
        }
    }

    /// Says the tunnel is reconnecting (`true`) or back (`false`).
    pub async fn reasserting(&self, reasserting: bool) -> Result<(), ProviderError> {
        self.send(&ProviderMessage::Reasserting { reasserting }).await
    }

    /// Sends a message to the app that controls the tunnel.
    pub async fn app_message(&self, data: Value) -> Result<(), ProviderError> {
        self.send(&ProviderMessage::AppMessage { data }).await
    }

    /// Gives up: the host stops the tunnel with `reason`.
    pub async fn cancel(
        &self,
        reason: StopReason,
        message: Option<String>,
    ) -> Result<(), ProviderError> {
        self.send(&ProviderMessage::Cancel { reason, message }).await
    }

    async fn request(&self, id: u64, message: ProviderMessage) -> Result<Reply, ProviderError> {
        let (tx, rx) = oneshot::channel();
        match self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(ProviderError::HostGone("no longer reading answers".into())),
        };
        self.send(&message).await?;
        rx.await.map_err(|_| ProviderError::HostGone("closed before answering".into()))
    }

    async fn send(&self, message: &ProviderMessage) -> Result<(), ProviderError> {
        let mut w = self.shared.writer.lock().await;
        w.write_all(&protocol::encode(message))
            .await
            .map_err(|e| ProviderError::HostGone(e.to_string()))
    }
}

/// Runs `provider` on the contract socket the host gave this process (`NW_TUNNEL_FD`, normally
/// 3) until the host stops it; returns the stop's reason.
pub async fn run<P: Provider>(provider: P) -> Result<StopReason, ProviderError> {
    let socket = nw_provider::contract_socket(FD_ENV).map_err(ProviderError::NotHosted)?;
    run_on(provider, socket).await
}

/// Runs `provider` on an already connected contract socket.
pub async fn run_on<P: Provider>(
    mut provider: P,
    socket: std::os::unix::net::UnixStream,
) -> Result<StopReason, ProviderError> {
    let stream =
        nw_provider::into_async(socket).map_err(|e| ProviderError::NotHosted(e.to_string()))?;
    let (read, write) = stream.into_split();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let pending = Mutex::new(Some(HashMap::new()));
    let shared = Arc::new(Shared {
        interface: std::sync::OnceLock::new(),
        writer: tokio::sync::Mutex::new(write),
        pending,
        next_id: AtomicU64::new(1),
    });
    let for_reader = Arc::clone(&shared);
    let reader = tokio::spawn(async move {
        read_loop(read, Arc::clone(&for_reader), events_tx).await;
        // No answer will come now: requests still waiting learn that the host is gone.
        *for_reader.pending.lock().unwrap_or_else(PoisonError::into_inner) = None;
    });

    let result = async {
        let (interface, options, device) = match events.recv().await {
            Some(Incoming::Start { interface, options, device }) => (interface, options, device),
            Some(Incoming::Stop(reason)) => return Ok(reason),
            Some(Incoming::Broken(e)) => return Err(e),
            Some(Incoming::App(_)) | None => {
                return Err(ProviderError::HostGone("no start message".into()));
            }
        };
        let _ = shared.interface.set(interface);
        let tunnel = Tunnel { shared: Arc::clone(&shared) };
        // Requests made while starting are answered by the reader task meanwhile; a stop that
        // arrives first abandons the start and stops the provider in order.
        let started = {
            let starting = provider.start(tunnel.clone(), device, options);
            tokio::select! {
                r = starting => Ok(r),
                e = events.recv() => Err(e),
            }
        };
        match started {
            Ok(Ok(())) => tunnel.send(&ProviderMessage::Started).await?,
            Ok(Err(message)) => tunnel.cancel(StopReason::ProviderFailed, Some(message)).await?,
            Err(Some(Incoming::Stop(reason))) => {
                provider.stop(reason).await;
                let _ = tunnel.send(&ProviderMessage::Stopped).await;
                return Ok(reason);
            }
            Err(Some(Incoming::Broken(e))) => return Err(e),
            Err(_) => return Err(ProviderError::HostGone("closed while starting".into())),
        }
        loop {
            match events.recv().await {
                Some(Incoming::App(data)) => provider.app_message(data).await,
                Some(Incoming::Stop(reason)) => {
                    provider.stop(reason).await;
                    let _ = tunnel.send(&ProviderMessage::Stopped).await;
                    return Ok(reason);
                }
                Some(Incoming::Broken(e)) => return Err(e),
                Some(Incoming::Start { .. }) => {
                    return Err(ProviderError::HostGone("sent start twice".into()));
                }
                None => return Err(ProviderError::HostGone("closed the contract socket".into())),
            }
        }
    }
    .await;
    reader.abort();
    result
}

enum Incoming {
    Start { interface: String, options: Value, device: AsyncDevice },
    App(Value),
    Stop(StopReason),
    Broken(ProviderError),
}

async fn read_loop(
    read: tokio::net::unix::OwnedReadHalf,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Incoming>,
) {
    let mut lines = LineBuffer::default();
    let mut fds: std::collections::VecDeque<OwnedFd> = Default::default();
    let mut buf = vec![0u8; 64 * 1024];
    let raw = read.as_ref().as_raw_fd();
    loop {
        let got = loop {
            if let Err(e) = read.as_ref().readable().await {
                break Err(e);
            }
            match read
                .as_ref()
                .try_io(tokio::io::Interest::READABLE, || fdpass::recv_with_fds(raw, &mut buf))
            {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => break other,
            }
        };
        let n = match got {
            Ok((0, _)) => {
                let _ = events.send(Incoming::Broken(ProviderError::HostGone("closed".into())));
                return;
            }
            Ok((n, new)) => {
                fds.extend(new);
                n
            }
            Err(e) => {
                let _ = events.send(Incoming::Broken(ProviderError::HostGone(e.to_string())));
                return;
            }
        };
        lines.extend(&buf[..n]);
        loop {
            let line = match lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    let _ = events.send(Incoming::Broken(e.into()));
                    return;
                }
            };
            let message = match protocol::decode::<HostMessage>(&line) {
                Ok(m) => m,
                Err(e) => {
                    let _ = events.send(Incoming::Broken(e.into()));
                    return;
                }
            };
            let reply = |id: u64, r: Reply| {
                let waiting = shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_mut()
                    .and_then(|w| w.remove(&id));
                if let Some(tx) = waiting {
                    let _ = tx.send(r);
                }
            };
            match message {
                HostMessage::Start { version, interface, options } => {
                    if version != VERSION {
                        let e =
                            format!("the host speaks contract version {version}, not {VERSION}");
                        let _ = events.send(Incoming::Broken(ProviderError::HostGone(e)));
                        return;
                    }
                    let Some(fd) = fds.pop_front() else {
                        let e = "start came without the TUN device".to_string();
                        let _ = events.send(Incoming::Broken(ProviderError::HostGone(e)));
                        return;
                    };
                    // SAFETY: the descriptor is the TUN device the host sent, owned by us alone.
                    let device = match unsafe { AsyncDevice::from_fd(fd.into_raw_fd()) } {
                        Ok(d) => d,
                        Err(e) => {
                            let e = format!("the TUN device is unusable: {e}");
                            let _ = events.send(Incoming::Broken(ProviderError::HostGone(e)));
                            return;
                        }
                    };
                    let _ = events.send(Incoming::Start { interface, options, device });
                }
                HostMessage::Applied { id } => reply(id, Reply::Applied),
                HostMessage::Error { id, message } => reply(id, Reply::Error(message)),
                HostMessage::Socket { id } => match fds.pop_front() {
                    Some(fd) => reply(id, Reply::Socket(fd)),
                    None => reply(id, Reply::Error("the socket did not arrive".into())),
                },
                HostMessage::AppMessage { data } => {
                    let _ = events.send(Incoming::App(data));
                }
                HostMessage::Stop { reason } => {
                    let _ = events.send(Incoming::Stop(reason));
                }
            }
        }
    }
}
