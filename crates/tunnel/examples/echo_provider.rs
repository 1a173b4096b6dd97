//! A packet tunnel provider on the Rust SDK: it applies the settings in its options, then
//! answers every ICMP echo request the tunnel carries, as if the far end were there.
//!
//! ```sh
//! cargo build -p nw-tunnel --example echo_provider
//! nw tunnel up --options '{"settings":{"addresses":["10.98.0.2/24"],"included_routes":["10.99.0.0/16"]}}' \
//!     --provider target/debug/examples/echo_provider
//! ping 10.99.1.1   # from another shell
//! ```

#![allow(clippy::print_stderr, reason = "an example says what it does on stderr")]

use nw_tunnel::provider::{self, AsyncDevice, Provider, Tunnel};
use nw_tunnel::{Settings, StopReason};

struct Echo;

impl Provider for Echo {
    async fn start(
        &mut self,
        tunnel: Tunnel,
        device: AsyncDevice,
        options: serde_json::Value,
    ) -> Result<(), String> {
        let settings: Settings = serde_json::from_value(options["settings"].clone())
            .map_err(|e| format!("options.settings: {e}"))?;
        tunnel.apply(Some(settings)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let mut packet = vec![0u8; 65_536];
            while let Ok(n) = device.recv(&mut packet).await {
                if let Some(reply) = echo_reply(&packet[..n]) {
                    let _ = device.send(&reply).await;
                }
            }
        });
        Ok(())
    }

    async fn stop(&mut self, reason: StopReason) {
        eprintln!("echo_provider: stopping ({})", reason.as_str());
    }
}

/// The reply to an IPv4 ICMP echo request: addresses swapped, type 0, checksum redone.
fn echo_reply(packet: &[u8]) -> Option<Vec<u8>> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || packet.get(9) != Some(&1) || packet.get(ihl) != Some(&8) {
        return None;
    }
    let mut reply = packet.to_vec();
    reply[12..16].copy_from_slice(&packet[16..20]);
    reply[16..20].copy_from_slice(&packet[12..16]);
    let icmp = &mut reply[ihl..];
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(reply)
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match provider::run(Echo).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_provider: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
