//! `nw-provider`: what every nwkit provider contract shares. A provider (a packet tunnel, a
//! content filter) is its own unprivileged process that talks to a privileged host over a
//! connected Unix stream socket, one JSON object per line. This crate is the part that does not
//! depend on what they say:
//!
//! - [`LineBuffer`], [`encode`] and [`decode`]: the framing, lines of at most [`MAX_LINE`]
//!   bytes; [`Reader`] reads messages with it from an async stream;
//! - [`Spawn`]: starting a provider with the socket as descriptor 3, as another user, in its
//!   own process group, killed by the kernel if its host dies, and [`kill_group`] to end what
//!   it started;
//! - [`contract_socket`]: the provider's side, taking the socket its host gave it.
//!
//! A provider is written on the SDK of what it provides, not on this crate: nw-tunnel's
//! (`examples/echo_provider.rs`) or nw-filter's (`examples/flow_log.rs`). This crate is for
//! those SDKs and their hosts.
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// The longest line either side accepts, newline included.
pub const MAX_LINE: usize = 1 << 20;
/// The descriptor the contract socket has in a provider a host starts.
pub const FD: i32 = 3;
/// The user and group providers run as when the host is root: `nobody`.
pub const NOBODY: (u32, u32) = (65_534, 65_534);

/// Why a provider stopped: Apple's `NEProviderStopReason`, in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No reason given.
    None,
    /// The user stopped it.
    UserInitiated,
    /// The provider failed: it exited, crashed, broke the contract, or said so.
    ProviderFailed,
    /// No network is available to carry the provider's traffic.
    NoNetworkAvailable,
    /// The network changed in a way the tunnel cannot follow.
    UnrecoverableNetworkChange,
    /// The provider was disabled.
    ProviderDisabled,
    /// The user logged out.
    UserLogout,
    /// The user switched.
    UserSwitch,
    /// The provider's configuration was removed.
    ConfigurationRemoved,
    /// Another provider took over.
    Superseded,
    /// The provider was stopped to be updated.
    AppUpdate,
    /// The provider did not answer in time.
    IdleTimeout,
    /// The configuration failed.
    ConfigurationFailed,
    /// The host is shutting down.
    Sleep,
}

impl StopReason {
    /// The reason as it is written in messages and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::UserInitiated => "user_initiated",
            Self::ProviderFailed => "provider_failed",
            Self::NoNetworkAvailable => "no_network_available",
            Self::UnrecoverableNetworkChange => "unrecoverable_network_change",
            Self::ProviderDisabled => "provider_disabled",
            Self::UserLogout => "user_logout",
            Self::UserSwitch => "user_switch",
            Self::ConfigurationRemoved => "configuration_removed",
            Self::Superseded => "superseded",
            Self::AppUpdate => "app_update",
            Self::IdleTimeout => "idle_timeout",
            Self::ConfigurationFailed => "configuration_failed",
            Self::Sleep => "sleep",
        }
    }
}

/// A line that is not a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than [`MAX_LINE`].
    #[error("a message longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not JSON, or not a message this contract's version knows.
    #[error("not a message of this contract version: {error} (in {line:?})")]
    Malformed {
        /// What the JSON reader said.
        error: String,
        /// The start of the line.
        line: String,
    },
    /// The socket failed.
    #[error("the contract socket failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads one message from a complete line (without its newline).
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, ProtocolError> {
    if line.len() >= MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed {
        error: e.to_string(),
        line: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
    })
}

/// Writes one message as a line, newline included.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing contract types cannot fail: every map key is a string.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no newline.
    scanned: usize,
}

impl LineBuffer {
    /// Adds bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, without its newline; `TooLong` once the buffer holds
    /// [`MAX_LINE`] bytes with no newline.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n').map(|p| p + self.scanned) {
            Some(end) if end < MAX_LINE => {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                Ok(Some(line))
            }
            Some(_) => Err(ProtocolError::TooLong),
            None if self.buf.len() >= MAX_LINE => Err(ProtocolError::TooLong),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }
}

/// Messages read from a contract socket, one per line: the framing over any async reader.
#[derive(Debug)]
pub struct Reader<R> {
    read: R,
    lines: LineBuffer,
    buf: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> Reader<R> {
    /// Reads from `read`.
    pub fn new(read: R) -> Self {
        Self { read, lines: LineBuffer::default(), buf: vec![0; 64 * 1024] }
    }

    /// The next message; `Ok(None)` once the peer closed the socket, and
    /// [`ProtocolError::Io`] when the socket failed. Cancel-safe (a `select!` branch): bytes
    /// leave the socket only in a read that completed, and are kept until a line is whole.
    pub async fn next<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, ProtocolError> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(line) = self.lines.next_line()? {
                return decode(&line).map(Some);
            }
            let n = self.read.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.lines.extend(&self.buf[..n]);
        }
    }
}

/// The provider's contract socket as a tokio stream (non-blocking, registered with the
/// runtime that calls this).
pub fn into_async(socket: std::os::unix::net::UnixStream) -> io::Result<tokio::net::UnixStream> {
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}

/// How to start a provider.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Its executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The user and group it runs as; `None` keeps the host's own.
    pub user: Option<(u32, u32)>,
    /// The environment variable that tells it the contract socket's descriptor.
    pub fd_env: &'static str,
}

impl Spawn {
    /// Starts the provider with `theirs` as descriptor [`FD`], stdin from /dev/null, stdout
    /// and stderr inherited, in a process group of its own (a Ctrl-C at the terminal reaches
    /// the host, which stops the provider in order), and killed by the kernel should the host
    /// die. The child is killed when dropped.
    pub fn start(&self, theirs: std::os::unix::net::UnixStream) -> io::Result<Child> {
        let theirs: OwnedFd = theirs.into();
        let raw = theirs.as_raw_fd();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env(self.fd_env, FD.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: between fork and exec only async-signal-safe calls: prctl, dup2 (which also
        // clears close-on-exec on the new descriptor) and fcntl.
        unsafe {
            cmd.pre_exec(move || {
                // Set after the uid change, which would clear it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if raw == FD {
                    let flags = libc::fcntl(FD, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        drop(theirs);
        child
    }

    /// What to add to a failed start's error so that it says what to try.
    pub fn hint(&self, error: &io::Error) -> String {
        match self.user {
            Some((uid, _)) if error.kind() == io::ErrorKind::PermissionDenied => format!(
                " (the provider runs as uid {uid}, which must be able to execute it and to enter every directory above it)"
            ),
            _ if error.kind() == io::ErrorKind::NotFound => {
                " (give the provider's path; it is not looked up relative to the host's directory)"
                    .into()
            }
            _ => String::new(),
        }
    }
}

/// The user providers run as by default: [`NOBODY`] when the host is root, else the host's own.
pub fn default_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(NOBODY)
}

/// Kills a provider's whole process group, by the pid of its leader kept at start: what the
/// provider started goes too, also after the leader has exited.
pub fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on the provider's own process group (it leads it); a group id is not
        // reused while any member of the group lives.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Runs a system tool a host needs (`iptables-restore`, `nft`) to completion, with `input` on
/// its standard input, and returns its standard output. Blocking: call it through
/// [`blocking`]. When the tool is missing, the error says which Debian package has it; when it
/// fails, the error carries its standard error (lines joined with "; ").
pub fn tool(
    program: &str,
    args: &[&str],
    input: Option<&str>,
    package: &str,
) -> io::Result<String> {
    use std::io::Write;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot run {program}: {e} (apt-get install {package})"))
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    Err(io::Error::other(format!("{program} {} failed: {}", args.join(" "), said.join("; "))))
}

/// Restart delays for a provider that keeps failing: the first restart waits `first`, each
/// failure in a row doubles the wait up to `max`, and a provider that ran `healthy` or longer
/// before failing starts over at `first`. A host asks once per failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A run at least this long resets the wait.
    pub healthy: Duration,
    last: Option<Duration>,
}

impl Backoff {
    /// Hosts' defaults: 250 ms, doubling to 30 s; a minute of running resets it.
    pub const fn new() -> Self {
        Self {
            first: Duration::from_millis(250),
            max: Duration::from_secs(30),
            healthy: Duration::from_secs(60),
            last: None,
        }
    }

    /// The wait before restarting a provider that failed after running `ran`.
    pub fn after_failure(&mut self, ran: Duration) -> Duration {
        let next = match self.last {
            Some(last) if ran < self.healthy => (last * 2).min(self.max),
            _ => self.first,
        };
        self.last = Some(next);
        next
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs blocking work (netlink, a child process such as iptables, procfs) on tokio's blocking
/// pool, so a host's event loop is not held up; a panic in it is carried to the caller.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Whether process `pid` runs (a host's or a provider's, named in a file or a rule). A zombie
/// does not: a host killed outright stays one until its parent reaps it, and still answers
/// kill(2).
pub fn alive(pid: u32) -> bool {
    let exists = libc::pid_t::try_from(pid)
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        .is_ok_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
    // /proc/PID/stat: "pid (comm) S …"; the state follows the last ')'.
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            let state =
                stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
}

/// A network namespace, exactly, as hosts name their state files after it (so a host inside a
/// namespace and the status command run there agree): its inode, by which /proc and
/// /run/netns show it — and which the kernel gives to a later namespace once this one is gone
/// (namespace inodes come from one allocator that hands out the lowest free number) — and its
/// cookie, which the kernel never gives again (`SO_NETNS_COOKIE`, Linux 5.14). A file left by
/// a namespace that is gone is so never taken for one of the namespace that got its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// Its inode (0 when /proc cannot say).
    pub inode: u64,
    /// Its cookie (0 when the kernel cannot say).
    pub cookie: u64,
}

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h, which x86-64 and arm64 use).
const SO_NETNS_COOKIE: libc::c_int = 71;

impl Namespace {
    /// The calling thread's network namespace.
    pub fn current() -> Self {
        let inode = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0);
        Self { inode, cookie: current_cookie().unwrap_or(0) }
    }

    /// The name its state files start with: `INODE-COOKIE`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.inode, self.cookie)
    }

    /// The namespace a state file's name starts with (`INODE-COOKIE`, then anything after a
    /// dot), if it does; a name of an older nw's, the inode alone, has cookie 0.
    pub fn of_name(name: &str) -> Option<Self> {
        let key = name.split('.').next()?;
        let (inode, cookie) = key.split_once('-').unwrap_or((key, "0"));
        Some(Self { inode: inode.parse().ok()?, cookie: cookie.parse().ok()? })
    }

    /// Whether this namespace is gone, given the inodes of those that exist
    /// ([`live_namespaces`]) and the caller's own (`here`): its inode is no live namespace's,
    /// or it is `here`'s with another cookie (a namespace that had the inode before). A name
    /// without a cookie (an older nw's, whose host may still run) is judged by its inode alone.
    pub fn gone(&self, live: &std::collections::HashSet<u64>, here: &Self) -> bool {
        let before_us = self.inode == here.inode && self.cookie != 0 && self.cookie != here.cookie;
        !live.contains(&self.inode) || before_us
    }
}

/// The calling thread's network namespace's cookie, from a socket made in it.
fn current_cookie() -> Option<u64> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = libc::socklen_t::try_from(size_of::<u64>()).ok()?;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `cookie`, which has that size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            std::ptr::from_mut(&mut cookie).cast(),
            &raw mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

/// The network namespaces that exist, by inode: those a process is in, and those named under
/// /run/netns (which exist with nobody in them). Empty when /proc cannot be read, so a caller
/// can tell "none found" from "cannot judge". Blocking (one `stat` per process).
pub fn live_namespaces() -> std::collections::HashSet<u64> {
    let mut live = std::collections::HashSet::new();
    let pids =
        std::fs::read_dir("/proc").into_iter().flatten().flatten().filter(|e| {
            e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        });
    for e in pids {
        if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
            live.insert(std::os::unix::fs::MetadataExt::ino(&m));
        }
    }
    if live.is_empty() {
        return live;
    }
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        if let Ok(m) = std::fs::metadata(e.path()) {
            live.insert(std::os::unix::fs::MetadataExt::ino(&m));
        }
    }
    live
}

/// The provider's side: the contract socket named by the environment variable `fd_env`.
/// Call it once; the descriptor is taken over.
pub fn contract_socket(fd_env: &str) -> Result<std::os::unix::net::UnixStream, String> {
    let fd: i32 = std::env::var(fd_env)
        .map_err(|_| format!("{fd_env} is not set (a provider is started by its host)"))?
        .parse()
        .map_err(|_| format!("{fd_env} is not a number"))?;
    if fd < 3 {
        return Err(format!("{fd_env}={fd} names a standard stream"));
    }
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("{fd_env}={fd} is not an open descriptor"));
    }
    // SAFETY: the host passed this descriptor to us for this purpose; we take it over once.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_namespace_is_among_the_live_ones() {
        let me = Namespace::current();
        assert_ne!(me.inode, 0, "/proc/thread-self/ns/net unreadable");
        assert_ne!(me.cookie, 0, "SO_NETNS_COOKIE unreadable (Linux 5.14 or later has it)");
        assert_eq!(Namespace::current(), me, "the same namespace reads the same");
        assert!(live_namespaces().contains(&me.inode));
        assert!(!me.gone(&live_namespaces(), &me));
    }

    /// State files are named `INODE-COOKIE…`; one of a namespace that is gone — its inode no
    /// live one's, or ours with another cookie (a namespace that had our inode before) — is
    /// told apart from ours.
    #[test]
    fn state_file_names_say_their_namespace_and_whether_it_is_gone() {
        let here = Namespace { inode: 4026531840, cookie: 1 };
        assert_eq!(here.key(), "4026531840-1");
        for (name, ns) in [
            ("4026531840-1", Some(here)),
            ("4026531840-1.json", Some(here)),
            ("4026531840-1.json.77.tmp", Some(here)),
            ("4026531840.log", Some(Namespace { cookie: 0, ..here })),
            ("4026531840-x.log", None),
            ("eth0.json", None),
            ("", None),
            ("-1", None),
        ] {
            assert_eq!(Namespace::of_name(name), ns, "{name:?}");
        }
        let live: std::collections::HashSet<u64> = [4026531840, 4026532001].into();
        assert!(!here.gone(&live, &here));
        assert!(Namespace { cookie: 9, ..here }.gone(&live, &here), "our inode, before us");
        assert!(!Namespace { cookie: 0, ..here }.gone(&live, &here), "an older nw's: by inode");
        assert!(Namespace { inode: 4026532002, cookie: 0 }.gone(&live, &here), "by inode");
        assert!(!Namespace { inode: 4026532001, cookie: 5 }.gone(&live, &here), "another's");
        assert!(Namespace { inode: 4026532002, cookie: 5 }.gone(&live, &here), "not live");
    }

    #[tokio::test]
    async fn a_reader_yields_each_message_then_the_close_and_refuses_garbage() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = Reader::new(a);
        // Two messages, the second split across writes.
        b.write_all(b"{\"n\":1}\n{\"n\"").await.unwrap_or_else(|e| panic!("{e}"));
        let first: Option<serde_json::Value> =
            reader.next().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, Some(serde_json::json!({"n": 1})));
        b.write_all(b":2}\nnot json\n").await.unwrap_or_else(|e| panic!("{e}"));
        let second: Option<serde_json::Value> =
            reader.next().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second, Some(serde_json::json!({"n": 2})));
        let bad = reader.next::<serde_json::Value>().await;
        assert!(matches!(bad, Err(ProtocolError::Malformed { .. })), "{bad:?}");
        drop(b);
        let end = reader.next::<serde_json::Value>().await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_starts_over_after_a_healthy_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..10).map(|_| b.after_failure(ms(10))).collect();
        assert_eq!(waits[..4], [ms(250), ms(500), ms(1000), ms(2000)]);
        assert_eq!(waits[9], Duration::from_secs(30), "capped: {waits:?}");
        assert_eq!(b.after_failure(Duration::from_secs(60)), ms(250), "a healthy run resets");
        assert_eq!(b.after_failure(ms(10)), ms(500));
    }

    #[test]
    #[allow(clippy::disallowed_methods, reason = "waits for a real child to exit")]
    fn a_zombie_is_not_alive() {
        let mut child =
            std::process::Command::new("true").spawn().unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        // Not yet reaped: a zombie once it has exited.
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!alive(pid), "an exited, unreaped child counts as alive");
        let _ = child.wait();
        assert!(alive(std::process::id()));
    }

    #[test]
    fn lines_split_and_overlong_ones_are_refused() {
        let mut b = LineBuffer::default();
        b.extend(b"{\"a\":1}\n{\"b\"");
        assert_eq!(b.next_line().ok().flatten().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(matches!(b.next_line(), Ok(None)));
        b.extend(b":2}\n");
        assert_eq!(b.next_line().ok().flatten().as_deref(), Some(&b"{\"b\":2}"[..]));
        let mut long = LineBuffer::default();
        long.extend(&vec![b'x'; MAX_LINE]);
        assert!(matches!(long.next_line(), Err(ProtocolError::TooLong)));
        let m: Result<serde_json::Value, _> = decode(b"not json");
        assert!(matches!(m, Err(ProtocolError::Malformed { .. })));
    }

    #[test]
    fn stop_reasons_are_written_as_in_messages() {
        for r in [
            StopReason::UserInitiated,
            StopReason::ProviderFailed,
            StopReason::ConfigurationRemoved,
        ] {
            let json = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }
}
