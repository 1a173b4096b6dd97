//! Serves a directory on loopback over HTTP/1.1, HTTP/2 and HTTP/3 — what `nw doctor` and the
//! tests run — with the validators and byte ranges a resumable download needs, under a
//! certificate from a CA made for this run alone.
//!
//! ```sh
//! cargo run -p nw-serve --example serve_dir -- ./public --ca-out /tmp/ca.pem
//! curl --cacert /tmp/ca.pem -r 0-99 https://127.0.0.1:PORT/big.iso   # a 206, 100 bytes
//! ```
//!
//! It prints its URL, then serves until its standard input ends (Ctrl-D) or Ctrl-C. The
//! responsiveness endpoints (`/config`, `/small`, `/large`, `/slurp`) are served beside the
//! files, so `nw quality URL/config --anchor /tmp/ca.pem` measures against it. Anyone who can
//! reach the port can read every file under the directory: it listens on loopback only.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its answers")]

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use nw_serve::{Embedded, Options};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_dir: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ca_out = match args.iter().position(|a| a == "--ca-out") {
        Some(at) => {
            let path = args.get(at + 1).ok_or("--ca-out needs the path to write the CA to")?;
            let path = PathBuf::from(path);
            args.drain(at..at + 2);
            Some(path)
        }
        None => None,
    };
    let [root] = args.as_slice() else {
        return Err("give the directory to serve (and --ca-out FILE to save the CA)".into());
    };
    let root = PathBuf::from(root);
    if !root.is_dir() {
        return Err(format!("{}: not a directory", root.display()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = Embedded::start(loopback, Some(&root), &Options::default()).await?;
        // Ctrl-C is listened for before the URL is out: one that comes at once is ours too.
        let mut interrupted =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        // Written, not printed: a reader that went away (`serve_dir DIR | head -1`) is an
        // error that ends it, never a panic.
        let mut announce = String::new();
        match &ca_out {
            // Replaced whole, never written through a link planted at its name.
            Some(path) => nw_trust::files::replace(path, server.ca_pem().as_bytes(), 0o644)
                .map_err(|e| format!("{}: cannot write the CA: {e}", path.display()))?,
            None => announce.push_str(server.ca_pem()),
        }
        announce.push_str(&format!(
            "serving {} at {} (HTTP/1.1 and HTTP/2 over TCP, HTTP/3 over UDP, port {})\n",
            root.display(),
            server.url("/"),
            server.h3.local_addr().port()
        ));
        if let Some(path) = &ca_out {
            let url = server.url("/");
            announce.push_str(&format!("trust it with: curl --cacert {} {url}\n", path.display()));
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(announce.as_bytes()).and_then(|()| stdout.flush())?;
        drop(stdout);
        // Until stdin ends, read on a thread of its own so the servers keep running — not the
        // runtime's blocking pool, whose read the runtime would wait for at exit, so that
        // Ctrl-C with stdin still open (a terminal) would hang.
        let (ended, stdin) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = ended.send(());
        });
        tokio::select! {
            _ = stdin => {}
            _ = interrupted.recv() => {}
        }
        server.http.shutdown(std::time::Duration::from_secs(1)).await;
        Ok(())
    })
}
