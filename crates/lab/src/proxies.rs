//! Real proxies on loopback, started for a test and stopped by their guards: tinyproxy (an
//! HTTP proxy: `CONNECT` tunnels and absolute-form forwarding, Basic authentication) and
//! microsocks (SOCKS5, with RFC 1929 username and password), both from Debian.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::nginx::{free_port, wait_listening};
use crate::{Child, LabError};

/// The first of `paths` that exists, or which package to install.
fn program(paths: &[&str], tool: &'static str, package: &'static str) -> Result<PathBuf, LabError> {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(LabError::MissingTool { tool, package })
}

/// A running tinyproxy on 127.0.0.1 that lets loopback clients through to any port.
#[derive(Debug)]
pub struct Tinyproxy {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Tinyproxy {
    /// Starts it; with `credentials` (user, password) it requires Basic authentication.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Self, LabError> {
        let exe =
            program(&["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"], "tinyproxy", "tinyproxy")?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("nw-tinyproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // No ConnectPort line: CONNECT to every port is allowed (tinyproxy.conf(5)).
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 64\n\
             LogLevel Connect\nLogFile \"{}\"\nDisableViaHeader Yes\n",
            dir.join("tinyproxy.log").display()
        );
        if let Some((user, password)) = credentials {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(dir.join("tinyproxy.conf"), config)?;
        let mut cmd = Command::new(exe);
        cmd.arg("-d").arg("-c").arg(dir.join("tinyproxy.conf"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?);
        let child = Child::spawn(cmd)?;
        let proxy = Self { child, dir, port };
        wait_listening(port, "tinyproxy", || proxy.log())?;
        Ok(proxy)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it logged (each request it took, among the rest), and what it said on stderr.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("tinyproxy.log"), read("stderr.log"))
    }

    /// Its directory (configuration and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.child.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running microsocks (SOCKS5) on 127.0.0.1.
#[derive(Debug)]
pub struct Microsocks {
    child: Child,
    port: u16,
}

impl Microsocks {
    /// Starts it; with `credentials` (user, password) it requires them.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Self, LabError> {
        let exe = program(&["/usr/bin/microsocks"], "microsocks", "microsocks")?;
        let port = free_port()?;
        let mut cmd = Command::new(exe);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = credentials {
            cmd.args(["-u", user, "-P", password]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = Child::spawn(cmd)?;
        wait_listening(port, "microsocks", String::new)?;
        Ok(Self { child, port })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        self.child.terminate();
    }
}
