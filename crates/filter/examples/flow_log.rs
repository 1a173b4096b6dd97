//! A content filter provider on the SDK, in a few dozen lines: each new flow a line on
//! stderr (which way, the peer, its host name when known, the process's stable identity),
//! each flow it let through a line when it closes (what it carried each way, how long it
//! lived), and flows to the peer ports in the `block_ports` option refused.
//!
//! ```sh
//! cargo build -p nw-filter --example flow_log
//! sudo nw filter up --provider target/debug/examples/flow_log --options '{"block_ports": [23]}'
//! ```
//!
//! The host starts it as `nobody` with the contract socket on descriptor 3; run by itself it
//! says it was not started by a host and exits 1.

#![allow(clippy::print_stderr, reason = "an example that logs what it decides")]

use std::collections::HashMap;
use std::time::Instant;

use nw_filter::provider::{self, Provider};
use nw_filter::{Direction, Flow, FlowVerdict, Report, Transport};
use serde_json::Value;

#[derive(Default)]
struct FlowLog {
    block_ports: Vec<u16>,
    /// When each flow let through was decided, and how to name it.
    open: HashMap<u64, (Instant, String)>,
}

impl Provider for FlowLog {
    async fn start(&mut self, options: Value) -> Result<(), String> {
        self.block_ports = match options.get("block_ports") {
            None => Vec::new(),
            Some(ports) => serde_json::from_value(ports.clone())
                .map_err(|e| format!("block_ports must be a list of port numbers: {e}"))?,
        };
        eprintln!("flow_log: refusing flows to ports {:?}", self.block_ports);
        Ok(())
    }

    async fn new_flow(&mut self, flow: Flow) -> FlowVerdict {
        let arrow = if flow.direction == Direction::Outbound { "->" } else { "<-" };
        let peer = flow
            .host
            .as_ref()
            .map_or_else(|| flow.remote.to_string(), |h| format!("{h} ({})", flow.remote));
        let who = flow.process.as_ref().map_or("?", |p| p.identity.as_str()).to_owned();
        let transport = match flow.transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        };
        let name = format!("#{} {who} {arrow} {peer} {transport}", flow.id);
        if self.block_ports.contains(&flow.remote.port()) {
            eprintln!("flow_log: {name}: refused");
            return FlowVerdict::Drop;
        }
        eprintln!("flow_log: {name}");
        #[allow(clippy::disallowed_methods, reason = "how long a real flow lived")]
        let now = Instant::now();
        self.open.insert(flow.id, (now, name));
        FlowVerdict::Allow
    }

    async fn closed(&mut self, report: Report) {
        let Some((began, name)) = self.open.remove(&report.id) else { return };
        eprintln!(
            "flow_log: {name}: closed after {:.1} s; out {} bytes ({} segments), in {} bytes ({} segments)",
            began.elapsed().as_secs_f64(),
            report.bytes_out,
            report.segments_out,
            report.bytes_in,
            report.segments_in
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match provider::run(FlowLog::default()).await {
        Ok(reason) => {
            eprintln!("flow_log: stopped ({reason:?})");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flow_log: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
