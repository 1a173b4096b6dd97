//! ngtcp2's HTTP/3 example server (`gtlsserver`, Debian's ngtcp2-server package) on loopback: an
//! independent HTTP/3 peer (nginx and curl here have no HTTP/3), stopped by its guard.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Child, LabError};

/// The running server.
#[derive(Debug)]
pub struct Gtlsserver {
    _child: Child,
    port: u16,
}

impl Gtlsserver {
    /// Serves `root` over HTTP/3 on 127.0.0.1 with the certificate chain and key (PEM files).
    pub fn start(root: &Path, cert: &Path, key: &Path) -> Result<Self, LabError> {
        let exe = ["/usr/sbin/gtlsserver", "/usr/bin/gtlsserver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(LabError::MissingTool { tool: "gtlsserver", package: "ngtcp2-server" })?;
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let mut cmd = Command::new(exe);
        cmd.arg("--quiet")
            .arg("--htdocs")
            .arg(root.canonicalize()?)
            // Windows that let a loopback transfer run at memory speed (the defaults cap a
            // stream at 6 MB in flight).
            .args(["--max-window=64M", "--max-stream-window=64M"])
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(key.canonicalize()?)
            .arg(cert.canonicalize()?);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = Child::spawn(cmd)?;
        let server = Self { _child: child, port };
        server.wait_bound()?;
        Ok(server)
    }

    /// Waits until the server holds its UDP port (binding it ourselves then fails).
    #[allow(clippy::disallowed_methods, reason = "lab: bounded wait for a server to bind")]
    fn wait_bound(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while Instant::now() < deadline {
            if UdpSocket::bind(addr).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LabError::Timeout { what: format!("gtlsserver bound to {addr}"), ms: 10_000 })
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}
