//! WireGuard's protocol as a pure machine: two devices, configured from wg-quick text, on a
//! network made of two queues, driven in virtual time — the handshake, the rekey after two
//! minutes, and what the initiator does when its peer goes dark — in a few milliseconds of
//! real time, with no socket and no root.
//!
//! ```sh
//! cargo run -p nw-wireguard --example two_peers
//! ```
//!
//! The client pings the server once a second and the server answers. Each handshake, and what
//! each side does once the server goes dark — both notice they sent and heard nothing back,
//! initiate, retry, and give up — is printed with its virtual time, then each side's figures
//! as `wg show` gives them.
//! The timers are the whitepaper's (§6): Rekey-After-Time 120 s, Rekey-Timeout 5 s,
//! Keepalive-Timeout 10 s, Rekey-Attempt-Time 90 s.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its answers")]

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use nw_wireguard::{Device, Received, SecretKey, TICK, parse};

const CLIENT_UDP: &str = "192.0.2.1:40000";
const SERVER_UDP: &str = "192.0.2.2:51820";
const CLIENT_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_IP: [u8; 4] = [10, 0, 0, 1];

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`… | head`): quietly, as a pipeline expects.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("two_peers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The two ends of the network, and the datagrams on their way to each.
struct Net {
    client: Device,
    server: Device,
    to_client: VecDeque<Vec<u8>>,
    to_server: VecDeque<Vec<u8>>,
    /// Whether datagrams to the server arrive.
    server_reachable: bool,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Written, not printed: a reader that goes away (`… | head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    let (client_key, server_key) = (SecretKey::generate(), SecretKey::generate());
    let public = |key: &SecretKey| key.public_key().ok_or("a generated key has no public key");
    let client_conf = format!(
        "[Interface]\nPrivateKey = {client_key}\nAddress = 10.0.0.2/32\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.0/24\nEndpoint = {SERVER_UDP}\n",
        public(&server_key)?
    );
    let server_conf = format!(
        "[Interface]\nPrivateKey = {server_key}\nListenPort = 51820\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.2/32\n",
        public(&client_key)?
    );
    #[allow(clippy::disallowed_methods, reason = "the start of virtual time")]
    let start = Instant::now();
    // The wall time only seeds the handshakes' TAI64N timestamps: any fixed moment will do.
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut net = Net {
        client: Device::new(&parse(&client_conf)?.config, start, wall)?,
        server: Device::new(&parse(&server_conf)?.config, start, wall)?,
        to_client: VecDeque::new(),
        to_server: VecDeque::new(),
        server_reachable: true,
    };
    let mut now = start;
    let at = |now: Instant| format!("{:>7.3} s", (now - start).as_secs_f64());
    let mut watched = [Watch::default(), Watch::default()];
    let mut echoed = 0u64;
    // 200 s of pings answered (the rekey falls at 120 s), then 120 s with the server dark.
    let dark_from = start + Duration::from_secs(200);
    let end = dark_from + Duration::from_secs(120);
    let mut next_ping = start;
    while now < end {
        if now >= dark_from && net.server_reachable {
            net.server_reachable = false;
            writeln!(out, "{}  the server goes dark: its datagrams are lost from here", at(now))?;
        }
        if now >= next_ping {
            let mut out = Vec::new();
            if let Some(to) =
                net.client.encapsulate(&packet(CLIENT_IP, SERVER_IP), now, &mut out)?
            {
                send(&mut net, to, out);
            }
            next_ping += Duration::from_secs(1);
        }
        net.client.tick(now);
        net.server.tick(now);
        echoed += deliver(&mut net, now)?;
        for (watch, (side, device)) in
            watched.iter_mut().zip([("client", &net.client), ("server", &net.server)])
        {
            for event in watch.update(&device.peers()[0]) {
                writeln!(out, "{}  {side}: {event}", at(now))?;
            }
        }
        now += TICK;
    }
    writeln!(out, "{echoed} pings answered")?;
    for (side, device) in [("client", &net.client), ("server", &net.server)] {
        for peer in device.peers() {
            let endpoint = peer.endpoint.map_or("(none)".to_owned(), |e| e.to_string());
            let last = peer.last_handshake.map_or("never".to_owned(), |t| at(t).trim().to_owned());
            writeln!(
                out,
                "{side}: peer {}\n  endpoint: {endpoint}\n  latest handshake: at {last}\n  \
                 transfer: {} B received, {} B sent\n  handshakes: {}, rounds given up: {}",
                peer.public_key, peer.rx_bytes, peer.tx_bytes, peer.handshakes, peer.abandoned
            )?;
        }
    }
    Ok(())
}

/// What was last seen of one side's peer, to say what changed.
#[derive(Default)]
struct Watch {
    handshakes: u64,
    unanswered: u32,
    abandoned: u64,
}

impl Watch {
    /// What happened since the last look, in words.
    fn update(&mut self, now: &nw_wireguard::PeerStatus) -> Vec<String> {
        let mut events = Vec::new();
        if now.handshakes > self.handshakes {
            let why = if now.handshakes == 1 { "the first packet" } else { "Rekey-After-Time" };
            events.push(format!("handshake {} complete ({why})", now.handshakes));
        }
        if now.unanswered == 1 && self.unanswered == 0 {
            events.push(match now.abandoned {
                0 => "sent and heard nothing back for 15 s: initiating a handshake".to_owned(),
                _ => "a packet to send: a new round of handshakes".to_owned(),
            });
        }
        if now.abandoned > self.abandoned {
            events.push(format!(
                "gave up after {} unanswered initiations (Rekey-Attempt-Time)",
                self.unanswered
            ));
        }
        (self.handshakes, self.unanswered, self.abandoned) =
            (now.handshakes, now.unanswered, now.abandoned);
        events
    }
}

/// Puts a datagram on the wire towards `to`.
fn send(net: &mut Net, to: SocketAddr, datagram: Vec<u8>) {
    if to.to_string() == SERVER_UDP {
        if net.server_reachable {
            net.to_server.push_back(datagram);
        }
    } else {
        net.to_client.push_back(datagram);
    }
}

/// Moves datagrams until the wire is quiet; the server answers each ping. Returns the answers
/// the client received.
fn deliver(net: &mut Net, now: Instant) -> Result<u64, Box<dyn std::error::Error>> {
    let client_udp: SocketAddr = CLIENT_UDP.parse()?;
    let server_udp: SocketAddr = SERVER_UDP.parse()?;
    let mut answers = 0;
    loop {
        while let Some((to, datagram)) = net.client.take_outgoing() {
            send(net, to, datagram);
        }
        while let Some((to, datagram)) = net.server.take_outgoing() {
            send(net, to, datagram);
        }
        if let Some(mut datagram) = net.to_server.pop_front() {
            if let Received::Packet(_) = net.server.decapsulate(&mut datagram, client_udp, now) {
                let mut out = Vec::new();
                if let Some(to) =
                    net.server.encapsulate(&packet(SERVER_IP, CLIENT_IP), now, &mut out)?
                {
                    send(net, to, out);
                }
            }
        } else if let Some(mut datagram) = net.to_client.pop_front() {
            if let Received::Packet(_) = net.client.decapsulate(&mut datagram, server_udp, now) {
                answers += 1;
            }
        } else if !net.client.has_outgoing() && !net.server.has_outgoing() {
            return Ok(answers);
        }
    }
}

/// A small IPv4 UDP packet from `src` to `dst`.
fn packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28 + 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&60u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}
