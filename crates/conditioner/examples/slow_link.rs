//! A server on loopback, and the same server behind a conditioned proxy with the `lte`
//! preset (150 ms round trips, 1.6 Mbit/s down): the round trip and a 100 KB reply timed both
//! ways, and what the link counted. No root needed.
//!
//! ```sh
//! cargo run -p nw-conditioner --example slow_link [PRESET]
//! ```

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nw_conditioner::{Proxy, ProxyConfig};

/// A server that answers each one-byte request with `REPLY` bytes.
const REPLY: usize = 100_000;

fn server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).is_ok() {
                    let size = if byte[0] == b'b' { REPLY } else { 1 };
                    if stream.write_all(&vec![b'x'; size]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// One request and its whole reply, timed.
fn ask(stream: &mut TcpStream, what: u8, size: usize) -> std::io::Result<Duration> {
    #[allow(clippy::disallowed_methods, reason = "an example that times a real link")]
    let began = Instant::now();
    stream.write_all(&[what])?;
    let mut reply = vec![0u8; size];
    stream.read_exact(&mut reply)?;
    Ok(began.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "lte".to_owned());
    let preset = nw_conditioner::preset(&name).ok_or_else(|| {
        let names: Vec<&str> = nw_conditioner::presets().iter().map(|p| p.name).collect();
        format!("no preset {name:?}; there are {}", names.join(", "))
    })?;
    let target = server()?;
    let proxy = Proxy::tcp(target, ProxyConfig::new(preset.up.clone(), preset.down.clone()))?;
    let mut out = format!("{name}: {}\n", preset.source);
    for (label, addr) in [("direct", target), ("conditioned", proxy.local_addr())] {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let rtt = ask(&mut stream, b'a', 1)?;
        let bulk = ask(&mut stream, b'b', REPLY)?;
        writeln!(
            out,
            "{label:>11}: round trip {:7.1} ms, {REPLY} bytes in {:7.1} ms",
            rtt.as_secs_f64() * 1e3,
            bulk.as_secs_f64() * 1e3
        )?;
    }
    let counted = proxy.counters();
    writeln!(
        out,
        "the link delivered {} packets up and {} down",
        counted.up.delivered, counted.down.delivered
    )?;
    Ok(emit(&out)?)
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the example quietly, where
/// `println!` would panic.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}
