//! The content filter provider contract, version 1. Any language can speak it; the Rust side
//! is [`crate::provider`].
//!
//! # Transport
//!
//! As for every nwkit provider ([`nw_provider`]): the host starts the provider as its own
//! unprivileged process with a connected Unix stream socket as descriptor 3 (the number is also
//! in `NW_FILTER_FD`); each message is one JSON object on one line, at most
//! [`MAX_LINE`](nw_provider::MAX_LINE) bytes, its `"type"` saying what it is. Unknown fields are
//! ignored; a line that is not a message ends the session (`provider_failed`).
//!
//! # A session
//!
//! 1. host → `{"type":"start","version":1,"options":{…}}`; provider →
//!    `{"type":"started"}` (or `{"type":"cancel","message":…}`). Until it is started, and
//!    whenever it is not running, flows get the host's failure policy.
//! 2. host → `{"type":"new_flow","flow":{"id":7,"transport":"tcp","direction":"outbound",
//!    "local":"10.0.0.1:40000","remote":"10.0.0.2:443","process":{"pid":…,"executable":…,
//!    "command_line":[…],"uid":…,"cgroup":…,"identity":…},"host":null}}` (`host`: for an
//!    outbound flow, the name a DNS answer to this host gave the peer's address in the last
//!    hour, when there was one; the flow's first bytes may name another); provider →
//!    `{"type":"verdict","id":7,"verdict":"allow"}` (or `"drop"`). Verdicts may come in any
//!    order; one that comes after the flow's deadline is ignored (the flow already had the
//!    failure policy), as is one for a flow the host does not know. A flow a peer started
//!    (a connection to a server here) is `"direction":"inbound"`: `local` is the service's
//!    address, `remote` the peer's, and the process the one whose socket it reaches.
//! 3. A provider that answers `"verdict":"filter_data","peek_outbound":N` about a TCP flow sees
//!    its first bytes before anything reaches the peer: host → `{"type":"data","id":7,
//!    "direction":"outbound","offset":0,"bytes":"<base64>","closed":false}` once N bytes are
//!    held, or fewer when the sender pushes them and waits (a TLS ClientHello, an HTTP
//!    request) or closes; provider → `{"type":"data_verdict","id":7,"verdict":"allow"}`,
//!    `"drop"`, or `"pass","pass":P,"peek":M`: the P bytes from `offset` go through, and the
//!    next `data` shows the M bytes after them. The host lets a packet through only when all
//!    its bytes are passed, so the peer receives exactly the passed bytes rounded down to a
//!    packet boundary, and never a byte of a dropped flow. Each `data` has the flow's deadline;
//!    past it the failure policy decides the flow. The sender is held back by at most the
//!    bytes asked for (and one packet).
//!
//!    With `"peek_inbound":N` too, the peer's first N bytes are held the same way and shown
//!    in `data` messages with `"direction":"inbound"` (an HTTP response, or the request of a
//!    flow a peer opened to a server here); `"peek_outbound":0` then lets this host's bytes go
//!    through unseen. One `data` is out per flow at a time, this host's bytes first; a
//!    `pass` is about the direction of the `data` it answers, while `allow` and `drop`
//!    decide the whole flow (a drop resets both ends).
//! 4. When a flow the provider allowed, or filtered the data of, closes: host →
//!    `{"type":"flow_closed","id":7,"bytes_out":…,"bytes_in":…,"segments_out":…,
//!    "segments_in":…}`, counted by the kernel; no answer. A TCP flow's comes as its socket
//!    is done, from its `tcp_info`: payload bytes, and every segment — the SYN, FIN and bare
//!    ACKs among them, resent ones too (`tcpi_segs_out`/`tcpi_segs_in`); a UDP flow's when its conntrack entry ends — at once
//!    when its socket closes, else once it has been idle for conntrack's UDP timeout (30 s,
//!    120 s once answered, and the kernel's sweep) — with the datagrams each way as
//!    segments and their payload bytes (conntrack's IP bytes less 28 per datagram over IPv4,
//!    48 over IPv6; extension headers and options are counted as payload). "out" is this
//!    host's side, whichever end started the flow.
//! 5. host → `{"type":"stop","reason":"user_initiated"}`; provider → `{"type":"stopped"}` and
//!    exits.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flow::{Data, DataVerdict, Flow, FlowVerdict, Report};
pub use nw_provider::StopReason;

/// The contract's version.
pub const VERSION: u32 = 1;
/// The environment variable that names the contract socket's descriptor.
pub const FD_ENV: &str = "NW_FILTER_FD";

/// What the host says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// The first message: the contract version and the configuration's options.
    Start {
        /// [`VERSION`].
        version: u32,
        /// Free-form options from the configuration.
        options: Value,
    },
    /// A flow waits for a verdict.
    NewFlow {
        /// The flow.
        flow: Flow,
    },
    /// Bytes of a flow the provider asked to filter the data of.
    Data(Data),
    /// A flow the provider allowed (or filtered the data of) has closed, with its
    /// counters. No answer.
    FlowClosed(Report),
    /// Stop now.
    Stop {
        /// Why.
        reason: StopReason,
    },
}

/// What the provider says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderMessage {
    /// Ready for flows.
    Started,
    /// The verdict for flow `id`.
    Verdict {
        /// The flow's id, from `new_flow`.
        id: u64,
        /// The verdict.
        #[serde(flatten)]
        verdict: FlowVerdict,
    },
    /// The verdict about the bytes of flow `id` last shown.
    DataVerdict {
        /// The flow's id.
        id: u64,
        /// The verdict.
        #[serde(flatten)]
        verdict: DataVerdict,
    },
    /// The provider gives up.
    Cancel {
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
    fn messages_have_the_documented_shape() {
        let m: ProviderMessage =
            nw_provider::decode(br#"{"type":"verdict","id":7,"verdict":"allow","extra":1}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m, ProviderMessage::Verdict { id: 7, verdict: FlowVerdict::Allow });
        let line =
            nw_provider::encode(&ProviderMessage::Verdict { id: 9, verdict: FlowVerdict::Drop });
        assert_eq!(line, b"{\"type\":\"verdict\",\"id\":9,\"verdict\":\"drop\"}\n");
        let start = nw_provider::encode(&HostMessage::Start {
            version: VERSION,
            options: serde_json::json!({}),
        });
        assert_eq!(start, b"{\"type\":\"start\",\"version\":1,\"options\":{}}\n");
        assert!(nw_provider::decode::<ProviderMessage>(br#"{"type":"verdict","id":7}"#).is_err());
        let data = nw_provider::encode(&HostMessage::Data(Data {
            id: 7,
            direction: crate::Direction::Outbound,
            offset: 0,
            bytes: b"hi".to_vec(),
            closed: true,
        }));
        assert_eq!(
            data,
            b"{\"type\":\"data\",\"id\":7,\"direction\":\"outbound\",\"offset\":0,\"bytes\":\"aGk=\",\"closed\":true}\n"
        );
        let m: ProviderMessage = nw_provider::decode(
            br#"{"type":"data_verdict","id":7,"verdict":"pass","pass":10,"peek":20}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m,
            ProviderMessage::DataVerdict {
                id: 7,
                verdict: DataVerdict::Pass { pass: 10, peek: 20 }
            }
        );
    }
}
