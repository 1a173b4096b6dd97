//! Real proxies on loopback, started for a test and stopped by their guards: tinyproxy (an
//! HTTP proxy: `CONNECT` tunnels and absolute-form forwarding, Basic authentication),
//! microsocks (SOCKS5, with RFC 1929 username and password), Dante (SOCKS4, without 4A's
//! names), and stunnel (TLS in front of another, which makes tinyproxy an HTTPS proxy), all
//! from Debian.

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

/// A daemon on a free loopback port with a directory of its own (its configuration, its log
/// file and its stderr), stopped and the directory removed by the guard.
#[derive(Debug)]
struct Daemon {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Its log file's name in `dir`.
    log: &'static str,
}

impl Daemon {
    /// Writes `config(dir, port)` to `dir/conf` (a fresh directory), runs `exe` with the
    /// arguments `args(dir)` gives, and waits until it listens on the port.
    fn start(
        exe: PathBuf,
        name: &'static str,
        (conf, log): (&str, &'static str),
        config: impl FnOnce(&Path, u16) -> String,
        args: impl FnOnce(&Path) -> Vec<std::ffi::OsString>,
    ) -> Result<Self, LabError> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("nw-{name}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(conf), config(&dir, port))?;
        let mut cmd = Command::new(exe);
        cmd.args(args(&dir));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?);
        let child = Child::spawn(cmd)?;
        let daemon = Self { child, dir, port, log };
        wait_listening(port, name, || daemon.log(), || false)?;
        Ok(daemon)
    }

    /// Its log file, then what it said on stderr.
    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read(self.log), read("stderr.log"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running tinyproxy on 127.0.0.1 that lets loopback clients through to any port.
#[derive(Debug)]
pub struct Tinyproxy(Daemon);

impl Tinyproxy {
    /// Starts it; with `credentials` (user, password) it requires Basic authentication.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Self, LabError> {
        let exe =
            program(&["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"], "tinyproxy", "tinyproxy")?;
        let config = |dir: &Path, port| {
            // No ConnectPort line: CONNECT to every port is allowed (tinyproxy.conf(5)).
            let mut config = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 64\n\
                 LogLevel Connect\nLogFile \"{}\"\nDisableViaHeader Yes\n",
                dir.join("tinyproxy.log").display()
            );
            if let Some((user, password)) = credentials {
                config.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            config
        };
        let args = |dir: &Path| vec!["-d".into(), "-c".into(), dir.join("tinyproxy.conf").into()];
        Daemon::start(exe, "tinyproxy", ("tinyproxy.conf", "tinyproxy.log"), config, args).map(Self)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// What it logged (each request it took, among the rest), and what it said on stderr.
    pub fn log(&self) -> String {
        self.0.log()
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
        wait_listening(port, "microsocks", String::new, || false)?;
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

/// A running stunnel on 127.0.0.1: TLS with a certificate, in front of a plain TCP service on
/// another loopback port (tinyproxy, to make an HTTPS proxy of it).
#[derive(Debug)]
pub struct Stunnel(Daemon);

impl Stunnel {
    /// Starts it: TLS with `cert` (the chain, PEM) and `key` on a free port, each connection
    /// relayed to 127.0.0.1:`to`.
    pub fn start(cert: &Path, key: &Path, to: u16) -> Result<Self, LabError> {
        let exe = program(&["/usr/bin/stunnel4", "/usr/bin/stunnel"], "stunnel4", "stunnel4")?;
        // As stunnel(8) documents it: an empty `pid` writes no pid file.
        let config = |dir: &Path, port| {
            format!(
                "foreground = yes\npid =\ndebug = info\noutput = {}\n\n[proxy]\n\
                 accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{to}\ncert = {}\nkey = {}\n",
                dir.join("stunnel.log").display(),
                cert.display(),
                key.display()
            )
        };
        let args = |dir: &Path| vec![dir.join("stunnel.conf").into()];
        Daemon::start(exe, "stunnel", ("stunnel.conf", "stunnel.log"), config, args).map(Self)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// What it logged and said on stderr.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// A running Dante server (`danted`) on 127.0.0.1, open to loopback clients: SOCKS4 (which
/// it speaks without SOCKS 4A's names) and SOCKS5, without authentication.
#[derive(Debug)]
pub struct Dante(Daemon);

impl Dante {
    /// Starts it (as root: it changes to `nobody` for what does not need privileges).
    pub fn start() -> Result<Self, LabError> {
        let exe = program(&["/usr/sbin/danted"], "danted", "dante-server")?;
        // danted.conf(5): client rules admit connections, socks rules the requests on them.
        let config = |dir: &Path, port| {
            format!(
                "logoutput: {}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
                 clientmethod: none\nsocksmethod: none\nuser.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  protocol: tcp\n  log: connect error\n}}\n",
                dir.join("danted.log").display()
            )
        };
        let args = |dir: &Path| {
            let (conf, pid) = (dir.join("danted.conf"), dir.join("danted.pid"));
            vec!["-f".into(), conf.into(), "-p".into(), pid.into()]
        };
        Daemon::start(exe, "danted", ("danted.conf", "danted.log"), config, args).map(Self)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// What it logged (each request passed or refused) and said on stderr.
    pub fn log(&self) -> String {
        self.0.log()
    }
}
