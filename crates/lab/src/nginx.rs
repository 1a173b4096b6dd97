//! A real nginx on loopback, started for a test or a benchmark and stopped by its guard.
//!
//! It serves a directory at `/`, the same directory rate-limited at `/slow/`, and rate-limited
//! with byte ranges switched off (`max_ranges 0`: every request gets the whole file, as from a
//! server that ignores `Range`) at `/norange/`, and rate-limited to one request at a time (a
//! second concurrent one gets 503, `limit_conn`) at `/one/`. Plain HTTP always; HTTPS (HTTP/1.1 and HTTP/2) on a
//! second port when given a certificate.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Child, LabError};

/// How nginx is set up. Besides the root, it serves `/slow/`, `/one/` (one connection per
/// client) and `/norange/` with `slow_rate`, and takes uploads: `PUT /put/NAME` writes
/// `ROOT/put/NAME`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// nginx's `limit_rate` for `/slow/`, `/norange/` and `/one/` (`"50m"`: 50 MB/s); 1 MB/s
    /// when unset.
    pub slow_rate: Option<String>,
    /// A certificate chain and key (PEM files) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// An `Alt-Svc` header for every HTTPS response (`h3=":4433"`), advertising an HTTP/3
    /// server that something else runs.
    pub alt_svc: Option<String>,
    /// Redirects on both servers: `(path, status, location)` answers a GET of exactly `path`
    /// with `status` and `Location: location` (relative or absolute, as given).
    pub redirects: Vec<(String, u16, String)>,
    /// gzip every response of any type to a client that accepts it (`gzip on`), as a web
    /// server compressing its pages and APIs does.
    pub gzip: bool,
    /// More of nginx's configuration for both servers (`location` blocks, say).
    pub extra: String,
}

/// The running server; dropping it stops it and removes its scratch directory.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    http: u16,
    https: Option<u16>,
}

/// A port free at the moment (the server binds it right after; a collision — another test's
/// socket took it first — fails that start, and [`Nginx::start`] tries other ports).
pub(crate) fn free_port() -> Result<u16, LabError> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Waits (10 s at most) until something listens on 127.0.0.1:`port`; `log` says why not.
/// Stops early, with the same error, once `gone` says the server exited.
#[allow(clippy::disallowed_methods, reason = "lab: bounded wait for a server to listen")]
pub(crate) fn wait_listening(
    port: u16,
    server: &str,
    log: impl Fn() -> String,
    mut gone: impl FnMut() -> bool,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline && !gone() {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError::Timeout { what: format!("{server} listening on {addr} ({})", log()), ms: 10_000 })
}

/// How many times [`Nginx::start`] tries, each on ports found free afresh.
const STARTS: usize = 3;

impl Nginx {
    /// Serves `root` on 127.0.0.1. A start whose nginx exits before it listens (its port was
    /// taken between our look and its bind, by a client of a test running beside it) is
    /// tried again on other ports, up to three times.
    pub fn start(root: &Path, options: &Options) -> Result<Self, LabError> {
        let mut tries = 1;
        loop {
            match Self::start_once(root, options) {
                Err(LabError::Command { .. }) if tries < STARTS => tries += 1,
                done => return done,
            }
        }
    }

    fn start_once(root: &Path, options: &Options) -> Result<Self, LabError> {
        let exe = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(LabError::MissingTool { tool: "nginx", package: "nginx-light" })?;
        let dir =
            std::env::temp_dir().join(format!("nw-nginx-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(dir.join("tmp"))?;
        let http = free_port()?;
        let https = options.tls.as_ref().map(|_| free_port()).transpose()?;
        let root = root.canonicalize()?;
        let rate = options.slow_rate.as_deref().unwrap_or("1m");
        // Uploads: PUT /put/NAME stores the body as ROOT/put/NAME (WebDAV's PUT, any size).
        std::fs::create_dir_all(root.join("put"))?;
        let put = format!(
            "location /put/ {{ alias {}/put/; dav_methods PUT; create_full_put_path on;
               client_max_body_size 0; }}",
            root.display()
        );
        let redirects: String = options
            .redirects
            .iter()
            .map(|(path, status, to)| format!("location = {path} {{ return {status} {to}; }}\n"))
            .collect();
        let put = format!("{put}\n{redirects}\n{}", options.extra);
        let tls_server = match (&options.tls, https) {
            (Some((cert, key)), Some(port)) => format!(
                "server {{ listen 127.0.0.1:{port} ssl http2; root {root};
                   ssl_certificate {cert}; ssl_certificate_key {key}; {alt_svc}
                   location /slow/ {{ alias {root}/; limit_rate {rate}; }}
                   location /norange/ {{ alias {root}/; max_ranges 0; limit_rate {rate}; }}
                   {put} }}",
                root = root.display(),
                cert = cert.canonicalize()?.display(),
                key = key.canonicalize()?.display(),
                alt_svc = options
                    .alt_svc
                    .as_ref()
                    .map(|v| format!("add_header Alt-Svc '{v}' always;"))
                    .unwrap_or_default(),
            ),
            _ => String::new(),
        };
        let d = dir.display();
        let config = format!(
            "daemon off; master_process off; worker_processes 1;
             error_log {d}/error.log; pid {d}/nginx.pid;
             events {{ worker_connections 256; }}
             http {{
               access_log off; sendfile on; tcp_nopush on;
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
               default_type application/octet-stream;
               limit_conn_zone $binary_remote_addr zone=one:1m;
               {gzip}
               server {{ listen 127.0.0.1:{http}; root {root};
                 location /slow/ {{ alias {root}/; limit_rate {rate}; }}
                 location /one/ {{ alias {root}/; limit_conn one 1; limit_rate {rate}; }}
                 location /norange/ {{ alias {root}/; max_ranges 0; limit_rate {rate}; }}
                 {put} }}
               {tls_server}
             }}",
            root = root.display(),
            gzip = if options.gzip {
                "gzip on; gzip_types *; gzip_min_length 0; gzip_proxied any;"
            } else {
                ""
            },
        );
        std::fs::write(dir.join("nginx.conf"), config)?;
        let mut cmd = Command::new(exe);
        cmd.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
        // Configuration errors go to stderr before error_log is open: keep them for the report.
        let stderr = std::fs::File::create(dir.join("stderr.log"))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let child = Child::spawn(cmd)?;
        let mut server = Self { child, dir, http, https };
        server.wait_listening(http)?;
        if let Some(port) = https {
            server.wait_listening(port)?;
        }
        Ok(server)
    }

    /// Waits for nginx to listen on `port`; nginx exiting first (a port taken, a configuration
    /// it refuses) is a `Command` error with what it said, at once.
    fn wait_listening(&mut self, port: u16) -> Result<(), LabError> {
        let dir = self.dir.clone();
        let said = move || {
            let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            format!(
                "error.log: {}; stderr: {}",
                read("error.log").trim(),
                read("stderr.log").trim()
            )
        };
        let child = &mut self.child;
        let mut exited = None;
        let waited = wait_listening(port, "nginx", &said, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
        });
        match exited {
            Some(status) => Err(LabError::Command {
                command: format!("nginx -p {}", self.dir.display()),
                status,
                stderr: said(),
            }),
            None => waited,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// `https://127.0.0.1:PORT{path}`, when started with TLS.
    pub fn https_url(&self, path: &str) -> Option<String> {
        self.https.map(|port| format!("https://127.0.0.1:{port}{path}"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.terminate();
        // A leftover scratch directory is harmless: removal is best-effort.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
