//! A netcat in the manner of Apple's nwcat sample: connect to HOST PORT (racing every address
//! with Happy Eyeballs, waiting for a usable path to it), or listen with `-l PORT`, and copy
//! stdin to the connection and the connection to stdout. `--tls` speaks TLS, trusting the
//! system's anchors when connecting; listening with `--tls` makes a throwaway certificate for
//! `localhost`.
//!
//! ```sh
//! cargo run -p nw-connection --example nwcat -- -l 7000          # one shell
//! cargo run -p nw-connection --example nwcat -- localhost 7000   # another
//! ```

#![allow(clippy::print_stderr, reason = "an example says what it does on stderr")]

use std::sync::Arc;

use nw_connection::connection::{Connection, State, Update};
use nw_connection::driver::{Io, Params, SystemResolver};
use nw_connection::endpoint::Endpoint;
use nw_connection::listener::{Config, Handler, Listener};
use nw_connection::tls::{self, ClientOptions};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tls = args.iter().any(|a| a == "--tls");
    let rest: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--tls").collect();
    let stream = match rest.as_slice() {
        ["-l", port] => accept(port.parse()?, tls).await?,
        [host, port] => connect(host, port.parse()?, tls).await?,
        _ => return Err("usage: nwcat [--tls] HOST PORT | nwcat [--tls] -l PORT".into()),
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
async fn connect(host: &str, port: u16, tls: bool) -> Result<Box<dyn Io>, Error> {
    let tls = tls
        .then(|| ClientOptions { system_anchors: true, ..ClientOptions::default() }.config())
        .transpose()?;
    let params = Params { tls, path: Some(nw_path::Conditions::default()), ..Params::default() };
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
    let tls = if tls {
        let ca = tls::TestCa::new("nwcat throwaway CA")?;
        let issued = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
        eprintln!("nwcat: clients can trust this root:\n{}", ca.root_pem());
        Some(tls::server_config(issued.chain, issued.key, &[])?)
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
    let listener = Listener::bind(at, Config { tls, ..Config::default() }, handler).await?;
    eprintln!("nwcat: listening on {}", listener.local_addr());
    let stream = rx.recv().await.ok_or("the listener stopped")?;
    listener.shutdown(std::time::Duration::ZERO).await;
    Ok(stream)
}
