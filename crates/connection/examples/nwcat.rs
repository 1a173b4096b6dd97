//! A netcat in the manner of Apple's nwcat sample: connect to HOST PORT (racing every address
//! with Happy Eyeballs, waiting for a usable path to it), or listen with `-l PORT`, and copy
//! stdin to the connection and the connection to stdout. `--tls` speaks TLS, trusting the
//! system's anchors when connecting, and `--anchor FILE` too; listening with `--tls` makes a
//! throwaway certificate for `localhost` and writes its root where clients can pass it.
//!
//! ```sh
//! cargo run -p nw-connection --example nwcat -- -l 7000          # one shell
//! cargo run -p nw-connection --example nwcat -- localhost 7000   # another
//! cargo run -p nw-connection --example nwcat -- --tls -l 7001    # says where its root is
//! cargo run -p nw-connection --example nwcat -- --tls --anchor ROOT localhost 7001
//! ```

#![allow(clippy::print_stderr, reason = "an example says what it does on stderr")]

use std::sync::Arc;

use nw_connection::Endpoint;
use nw_connection::tls::{self, ClientOptions};
use nw_connection::{Connection, State, Update};
use nw_connection::{Handler, Listener, ListenerConfig};
use nw_connection::{Io, Parameters, SystemResolver};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage: nwcat [--tls [--anchor FILE]] HOST PORT | nwcat [--tls] -l PORT";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).peekable();
    let (mut tls, mut anchor, mut rest) = (false, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls" => tls = true,
            "--anchor" => anchor = Some(args.next().ok_or("--anchor needs a file")?),
            _ => rest.push(arg),
        }
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let stream = match rest.as_slice() {
        ["-l", port] => accept(port.parse()?, tls).await?,
        [host, port] => connect(host, port.parse()?, tls, anchor.as_deref()).await?,
        _ => return Err(USAGE.into()),
    };
    let (mut from, mut to) = tokio::io::split(stream);
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let up = async {
        tokio::io::copy(&mut stdin, &mut to).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut to).await // half-close: the peer sees the end
    };
    let (sent, received) = tokio::join!(up, tokio::io::copy(&mut from, &mut stdout));
    sent?;
    received?;
    Ok(())
}

/// A connection through nw-connection's `Connection`: it waits while the path to the
/// destination is unusable (saying why), then races every address.
async fn connect(
    host: &str,
    port: u16,
    tls: bool,
    anchor: Option<&str>,
) -> Result<Box<dyn Io>, Error> {
    let extra_anchors = match anchor {
        Some(file) => tls::load_certs(std::path::Path::new(file))?,
        None => Vec::new(),
    };
    let options = ClientOptions { system_anchors: true, extra_anchors, ..ClientOptions::default() };
    let tls = tls.then(|| options.config()).transpose()?;
    let params =
        Parameters { tls, path: Some(nw_path::Conditions::default()), ..Parameters::default() };
    let mut conn = Connection::new(
        Endpoint::new(host, port)?,
        params,
        Arc::new(SystemResolver::from_system()),
    );
    while let Some(Update::State(state)) = conn.next_update().await {
        match state {
            State::Waiting { reason } => eprintln!("nwcat: waiting: {:?}", reason),
            State::Ready | State::Failed { .. } => break,
            _ => {}
        }
    }
    let connected = conn.ready().await?;
    eprintln!("nwcat: connected to {:?}", connected.report.connected);
    Ok(connected.stream)
}

/// The first client to connect (and finish its TLS handshake, with `--tls`).
async fn accept(port: u16, tls: bool) -> Result<Box<dyn Io>, Error> {
    let root = std::env::temp_dir().join(format!("nwcat-root-{}.pem", std::process::id()));
    let tls = if tls {
        let ca = nw_trust::ca::TestCa::new("nwcat throwaway CA")?;
        let issued = ca.server(&["localhost", "127.0.0.1", "::1"])?;
        std::fs::write(&root, ca.cert_pem())?;
        eprintln!("nwcat: clients can trust it with --anchor {}", root.display());
        Some(tls::server_config(issued.chain.clone(), issued.key()?, &[])?)
    } else {
        None
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let handler: Handler = Arc::new(move |stream, peer| {
        eprintln!("nwcat: connection from {peer}");
        let _ = tx.try_send(stream);
        Box::pin(async {})
    });
    let at = std::net::SocketAddr::from(([0u16; 8], port));
    let listener =
        Listener::bind(at, ListenerConfig { tls, ..ListenerConfig::default() }, handler).await?;
    eprintln!("nwcat: listening on {}", listener.local_addr());
    let stream = rx.recv().await.ok_or("the listener stopped")?;
    listener.shutdown(std::time::Duration::ZERO).await;
    // The client read the root before it connected; nobody needs it now.
    let _ = std::fs::remove_file(&root);
    Ok(stream)
}
