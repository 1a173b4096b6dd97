//! The provider side of the contract in Rust: implement [`Provider`], call [`run`].
//!
//! ```no_run
//! use nw_filter::provider::{self, Provider};
//! use nw_filter::{Flow, FlowVerdict};
//!
//! /// Drops every flow to port 23, allows the rest.
//! struct NoTelnet;
//!
//! impl Provider for NoTelnet {
//!     async fn new_flow(&mut self, flow: Flow) -> FlowVerdict {
//!         if flow.remote.port() == 23 { FlowVerdict::Drop } else { FlowVerdict::Allow }
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let reason = provider::run(NoTelnet).await;
//!     eprintln!("stopped: {reason:?}");
//! }
//! ```

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use std::collections::HashMap;

use crate::flow::{Data, DataVerdict, Flow, FlowVerdict, Report};
use crate::protocol::{FD_ENV, HostMessage, ProviderMessage, StopReason, VERSION};
use nw_provider::ProtocolError;

/// A content filter provider. Flows are asked one at a time, in the order they arrive; each
/// has a deadline (2 s by default), after which the host's failure policy decides it.
pub trait Provider: Send + 'static {
    /// Prepares the provider with the configuration's options; an error cancels it.
    fn start(&mut self, options: Value) -> impl Future<Output = Result<(), String>> + Send {
        let _ = options;
        async { Ok(()) }
    }

    /// The verdict for a new flow.
    fn new_flow(&mut self, flow: Flow) -> impl Future<Output = FlowVerdict> + Send;

    /// The verdict about a flow's bytes, for a flow this provider answered
    /// [`FlowVerdict::FilterData`] about (`flow` is the flow as `new_flow` saw it, with its
    /// `host` read from its first bytes when they name one — a TLS server name or an HTTP
    /// Host, [`crate::host_name`] — over the name a DNS answer gave its address). The default
    /// allows the rest of the flow.
    fn data(&mut self, flow: &Flow, data: Data) -> impl Future<Output = DataVerdict> + Send {
        let _ = (flow, data);
        async { DataVerdict::Allow }
    }

    /// A flow this provider allowed, or filtered the data of, has closed (TCP: its socket is
    /// done; UDP: its conntrack entry ended, see [`crate::protocol`]): what it
    /// carried. The default does nothing.
    fn closed(&mut self, report: Report) -> impl Future<Output = ()> + Send {
        let _ = report;
        async {}
    }

    /// Stops the provider; after it returns the runner says `stopped` and returns.
    fn stop(&mut self, reason: StopReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

/// The host went away or broke the contract.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The contract socket closed or broke.
    #[error("the host is gone: {0}")]
    HostGone(String),
    /// The host broke the contract.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The provider was not started by a host (no contract socket).
    #[error("no contract socket: {0} (a provider is started by `nw filter up --provider`)")]
    NotHosted(String),
}

/// Runs `provider` on the contract socket the host gave this process (`NW_FILTER_FD`) until
/// the host stops it; returns the stop's reason.
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
    let (read, mut write) = stream.into_split();
    let mut reader = nw_provider::Reader::new(read);
    let mut started = false;
    // The flows whose data this provider filters, until their data verdict is final.
    let mut filtering: HashMap<u64, Flow> = HashMap::new();
    loop {
        let message = match reader.next::<HostMessage>().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(ProviderError::HostGone("closed the contract socket".into())),
            Err(ProtocolError::Io(e)) => return Err(ProviderError::HostGone(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let reply = match message {
            HostMessage::Start { version, options } => {
                if version != VERSION || started {
                    let e = format!(
                        "start with version {version} (this SDK speaks {VERSION}), or a second start"
                    );
                    return Err(ProviderError::HostGone(e));
                }
                started = true;
                match provider.start(options).await {
                    Ok(()) => ProviderMessage::Started,
                    Err(message) => ProviderMessage::Cancel { message: Some(message) },
                }
            }
            HostMessage::NewFlow { flow } => {
                let id = flow.id;
                let verdict = provider.new_flow(flow.clone()).await;
                if matches!(verdict, FlowVerdict::FilterData { .. }) {
                    filtering.insert(id, flow);
                }
                ProviderMessage::Verdict { id, verdict }
            }
            HostMessage::Data(data) => {
                let id = data.id;
                // Data about a flow this provider did not ask to filter: the host's mistake;
                // letting the flow through is what the provider said about it.
                let verdict = match filtering.get_mut(&id) {
                    Some(flow) => {
                        // The name in the first bytes of the end that opened the flow (a
                        // TLS server name, an HTTP Host), over the one a DNS answer gave its
                        // address, as the host itself takes it.
                        if data.offset == 0
                            && data.direction == flow.direction
                            && let Some(name) = crate::names::host_name(&data.bytes)
                        {
                            flow.host = Some(name);
                        }
                        provider.data(flow, data).await
                    }
                    None => DataVerdict::Allow,
                };
                if !matches!(verdict, DataVerdict::Pass { .. }) {
                    filtering.remove(&id);
                }
                ProviderMessage::DataVerdict { id, verdict }
            }
            HostMessage::FlowClosed(report) => {
                filtering.remove(&report.id);
                provider.closed(report).await;
                continue;
            }
            HostMessage::Stop { reason } => {
                provider.stop(reason).await;
                let _ = write.write_all(&nw_provider::encode(&ProviderMessage::Stopped)).await;
                return Ok(reason);
            }
        };
        write
            .write_all(&nw_provider::encode(&reply))
            .await
            .map_err(|e| ProviderError::HostGone(e.to_string()))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use tokio::io::AsyncReadExt;

    struct EvenPorts;

    impl Provider for EvenPorts {
        async fn new_flow(&mut self, flow: Flow) -> FlowVerdict {
            if flow.remote.port() == 443 {
                FlowVerdict::FilterData { peek_outbound: 4, peek_inbound: 0 }
            } else if flow.remote.port().is_multiple_of(2) {
                FlowVerdict::Allow
            } else {
                FlowVerdict::Drop
            }
        }

        async fn data(&mut self, flow: &Flow, data: Data) -> DataVerdict {
            match (flow.remote.port(), data.bytes.as_slice()) {
                (443, b"GET ") => DataVerdict::Pass { pass: 4, peek: 8 },
                (443, b"/x") => DataVerdict::Drop,
                _ => DataVerdict::Allow,
            }
        }
    }

    #[tokio::test]
    async fn the_runner_speaks_the_contract() {
        let (host, ours) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let runner = tokio::spawn(run_on(EvenPorts, ours));
        host.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        let mut host = tokio::net::UnixStream::from_std(host).unwrap_or_else(|e| panic!("{e}"));
        let flow = |id: u64, port: u16| HostMessage::NewFlow {
            flow: Flow {
                id,
                transport: Transport::Tcp,
                direction: Direction::Outbound,
                local: "10.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
                remote: format!("10.0.0.2:{port}").parse().unwrap_or_else(|e| panic!("{e}")),
                process: None,
                host: None,
            },
        };
        let mut out =
            nw_provider::encode(&HostMessage::Start { version: VERSION, options: Value::Null });
        out.extend(nw_provider::encode(&flow(1, 80)));
        out.extend(nw_provider::encode(&flow(2, 81)));
        out.extend(nw_provider::encode(&flow(3, 443)));
        let data = |bytes: &[u8]| {
            nw_provider::encode(&HostMessage::Data(Data {
                id: 3,
                direction: Direction::Outbound,
                offset: 0,
                bytes: bytes.to_vec(),
                closed: false,
            }))
        };
        out.extend(data(b"GET "));
        out.extend(data(b"/x"));
        out.extend(data(b"after the drop"));
        // A report gets no answer.
        let closed = Report { id: 1, bytes_out: 67, bytes_in: 42, segments_out: 5, segments_in: 5 };
        out.extend(nw_provider::encode(&HostMessage::FlowClosed(closed)));
        out.extend(nw_provider::encode(&HostMessage::Stop { reason: StopReason::UserInitiated }));
        host.write_all(&out).await.unwrap_or_else(|e| panic!("{e}"));
        let reason = runner.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reason.ok(), Some(StopReason::UserInitiated));
        let mut got = String::new();
        host.read_to_string(&mut got).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got,
            "{\"type\":\"started\"}\n{\"type\":\"verdict\",\"id\":1,\"verdict\":\"allow\"}\n{\"type\":\"verdict\",\"id\":2,\"verdict\":\"drop\"}\n{\"type\":\"verdict\",\"id\":3,\"verdict\":\"filter_data\",\"peek_outbound\":4,\"peek_inbound\":0}\n{\"type\":\"data_verdict\",\"id\":3,\"verdict\":\"pass\",\"pass\":4,\"peek\":8}\n{\"type\":\"data_verdict\",\"id\":3,\"verdict\":\"drop\"}\n{\"type\":\"data_verdict\",\"id\":3,\"verdict\":\"allow\"}\n{\"type\":\"stopped\"}\n"
        );
    }
}

#[cfg(test)]
mod named {
    use super::*;
    use crate::flow::{Direction, Transport};
    use tokio::io::AsyncReadExt;

    /// Drops flows to a.example, by the name the runner reads from their first bytes.
    struct NoA;

    impl Provider for NoA {
        async fn new_flow(&mut self, _flow: Flow) -> FlowVerdict {
            FlowVerdict::FilterData { peek_outbound: 64, peek_inbound: 0 }
        }

        async fn data(&mut self, flow: &Flow, _data: Data) -> DataVerdict {
            if flow.host.as_deref() == Some("a.example") {
                DataVerdict::Drop
            } else {
                DataVerdict::Allow
            }
        }
    }

    #[tokio::test]
    async fn the_runner_names_a_flow_from_its_first_bytes() {
        let (host, ours) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let runner = tokio::spawn(run_on(NoA, ours));
        host.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        let mut host = tokio::net::UnixStream::from_std(host).unwrap_or_else(|e| panic!("{e}"));
        let mut out =
            nw_provider::encode(&HostMessage::Start { version: VERSION, options: Value::Null });
        // Flow 3 came named b.example by a DNS answer; its bytes name a.example, and win.
        // Flow 4's DNS name stays: its bytes name nothing.
        let request = &b"GET / HTTP/1.1\r\nHost: A.example:80\r\n\r\n"[..];
        for (id, bytes, dns) in [
            (1, request, None),
            (2, &b"\x00??"[..], None),
            (3, request, Some("b.example")),
            (4, &b"\x00??"[..], Some("a.example")),
        ] {
            out.extend(nw_provider::encode(&HostMessage::NewFlow {
                flow: Flow {
                    id,
                    transport: Transport::Tcp,
                    direction: Direction::Outbound,
                    local: "10.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
                    remote: "10.0.0.2:80".parse().unwrap_or_else(|e| panic!("{e}")),
                    process: None,
                    host: dns.map(str::to_owned),
                },
            }));
            out.extend(nw_provider::encode(&HostMessage::Data(Data {
                id,
                direction: Direction::Outbound,
                offset: 0,
                bytes: bytes.to_vec(),
                closed: false,
            })));
        }
        out.extend(nw_provider::encode(&HostMessage::Stop { reason: StopReason::UserInitiated }));
        host.write_all(&out).await.unwrap_or_else(|e| panic!("{e}"));
        let _ = runner.await;
        let mut got = String::new();
        host.read_to_string(&mut got).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(got.contains("{\"type\":\"data_verdict\",\"id\":1,\"verdict\":\"drop\"}"), "{got}");
        for (id, verdict) in [(2, "allow"), (3, "drop"), (4, "drop")] {
            let line =
                format!("{{\"type\":\"data_verdict\",\"id\":{id},\"verdict\":\"{verdict}\"}}");
            assert!(got.contains(&line), "{line} in {got}");
        }
    }
}
