//! ngtcp2's HTTP/3 example server (`gtlsserver`, Debian's ngtcp2-server package) on loopback: an
//! independent HTTP/3 peer (nginx and curl here have no HTTP/3), stopped by its guard.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Child, LabError};

/// The running server.
#[derive(Debug)]
pub struct Gtlsserver {
    _child: Child,
    port: u16,
    log: PathBuf,
}

/// How many ports to try: the one picked can be taken by someone else between our probe
/// releasing it and the server binding it, and the server then exits at once.
const ATTEMPTS: usize = 3;

impl Gtlsserver {
    /// Serves `root` over HTTP/3 on 127.0.0.1 with the certificate chain and key (PEM files).
    pub fn start(root: &Path, cert: &Path, key: &Path) -> Result<Self, LabError> {
        let exe = ["/usr/sbin/gtlsserver", "/usr/bin/gtlsserver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(LabError::MissingTool { tool: "gtlsserver", package: "ngtcp2-server" })?;
        let (root, cert, key) = (root.canonicalize()?, cert.canonicalize()?, key.canonicalize()?);
        let mut attempt = 1;
        loop {
            let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
            let log = std::env::temp_dir()
                .join(format!("nw-gtlsserver-{}-{port}.log", std::process::id()));
            let mut cmd = Command::new(&exe);
            cmd.arg("--quiet")
                .arg("--htdocs")
                .arg(&root)
                // Windows that let a loopback transfer run at memory speed (the defaults cap a
                // stream at 6 MB in flight).
                .args(["--max-window=64M", "--max-stream-window=64M"])
                .arg("127.0.0.1")
                .arg(port.to_string())
                .arg(&key)
                .arg(&cert);
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
            let mut child = Child::spawn(cmd)?;
            let error = match wait_bound(&mut child, port, &log) {
                Ok(()) => return Ok(Self { _child: child, port, log }),
                Err(e) => e,
            };
            drop(child);
            let _ = std::fs::remove_file(&log);
            if attempt == ATTEMPTS {
                return Err(error);
            }
            attempt += 1;
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Gtlsserver {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits until `port` shows up bound in `/proc/net/udp`, or the server exits. Reading the
/// kernel's table instead of trying to bind the port ourselves: a probe that binds could take the
/// port in the instant before the server binds it, and the server would exit.
#[allow(clippy::disallowed_methods, reason = "lab: bounded wait for a server to bind")]
fn wait_bound(child: &mut Child, port: u16, log: &Path) -> Result<(), LabError> {
    const LIMIT: Duration = Duration::from_secs(10);
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if udp_bound(&std::fs::read_to_string("/proc/net/udp")?, port) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(LabError::Command {
                command: format!("gtlsserver on 127.0.0.1:{port}"),
                status,
                stderr: std::fs::read_to_string(log).unwrap_or_default().trim().to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError::Timeout {
        what: format!("gtlsserver bound to 127.0.0.1:{port}"),
        ms: LIMIT.as_millis(),
    })
}

/// Whether a socket in `table` (the text of `/proc/net/udp`) is bound to 127.0.0.1:`port`. The
/// local address is the second column, `0100007F:PORT` in hex (the address in host byte order on
/// little-endian machines, so the port is matched alone, on any address).
fn udp_bound(table: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1).is_some_and(|local| local.ends_with(&want)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_found_in_the_kernel_table() {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        assert!(udp_bound(&table, port), "port {port} not in:\n{table}");
        drop(socket);
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        assert!(!udp_bound(&table, port), "port {port} still in:\n{table}");
    }
}
