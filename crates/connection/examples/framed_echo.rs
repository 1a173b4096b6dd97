//! Framed messages over a live connection: an echo server that frames with a 4-byte length
//! prefix, and a client that sends three messages (one of 300 kB) and reads them back, both on
//! loopback in one process. The framer never lets a message be split or merged, and sending
//! waits for the connection to take the bytes (back-pressure).
//!
//! ```sh
//! cargo run -p nw-connection --example framed_echo
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use nw_connection::Framed;
use nw_connection::{Framing, Width};
use nw_connection::{Handler, Listener, ListenerConfig};
use nw_connection::{Io, MemoryResolver, Parameters, connect};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let framing = Framing::LengthPrefixed { width: Width::U32, max_len: 1 << 20 };
    let server_framing = framing.clone();
    // The server: every message back as it came, until the client finishes.
    let echo: Handler = Arc::new(move |stream: Box<dyn Io>, _peer| {
        let framing = server_framing.clone();
        Box::pin(async move {
            let Ok(mut f) = Framed::new(stream, framing) else { return };
            while let Ok(Some(message)) = f.recv().await {
                if f.send(&message).await.is_err() {
                    return;
                }
            }
            let _ = f.finish().await;
        })
    });
    let listener = Listener::bind("127.0.0.1:0".parse()?, ListenerConfig::default(), echo).await?;
    let port = listener.local_addr().port();

    // The client: a name the in-memory resolver knows, raced like any other.
    let resolver = Arc::new(MemoryResolver::new().with("echo.test", &["127.0.0.1".parse()?]));
    let connected = connect("echo.test", port, &Parameters::default(), resolver).await?;
    let mut f = Framed::new(connected.stream, framing)?;
    let big = vec![b'x'; 300_000];
    let messages: [&[u8]; 3] = [b"hello", &big, b"bye"];
    for m in messages {
        f.send(m).await?;
    }
    f.finish().await?;
    let mut out = String::new();
    for m in messages {
        let back = f.recv().await?.ok_or("the server closed early")?;
        assert_eq!(back, m);
        writeln!(out, "echoed a {}-byte message", back.len())?;
    }
    listener.shutdown(std::time::Duration::from_secs(1)).await;
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
