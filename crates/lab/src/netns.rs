//! Namespaces, veth links and addresses, each torn down by its guard.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process::{self, Child};
use crate::{LabError, TcpCounters, addr};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The lab: a source of uniquely named namespaces. Cheap; holds nothing itself.
#[derive(Debug)]
pub struct Lab {
    id: String,
}

impl Lab {
    /// Checks for root and iproute2, and fails saying which is missing.
    pub fn new() -> Result<Self, LabError> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LabError::NeedsRoot);
        }
        require_tool("ip", "iproute2")?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(Self { id: format!("nwl{}x{n}", std::process::id()) })
    }

    /// A new namespace with loopback up. `role` is a short label that ends its name.
    pub fn namespace(&self, role: &str) -> Result<Namespace, LabError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}-{role}", self.id);
        process::output(cmd("ip", ["netns", "add", &name]))?;
        let ns = Namespace { name, spawned: std::sync::Mutex::new(Vec::new()) };
        ns.ip(["link", "set", "lo", "up"])?;
        // No duplicate address detection: link-local addresses appear usable at once instead of
        // turning from tentative to valid 1–2 s after every carrier-up, which would be an
        // address event no test asked for. And IPv6 addresses are kept across link down/up.
        in_namespace(&ns, || {
            for conf in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad"), "0")?;
                // Static IPv6 addresses survive a link going down and up, as a real host's
                // configuration would (the kernel's default flushes them).
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/keep_addr_on_down"), "1")?;
            }
            Ok::<(), std::io::Error>(())
        })??;
        Ok(ns)
    }

    /// Joins two namespaces with a veth pair (`a_dev` in `a`, `b_dev` in `b`), both up.
    /// The pair is created directly inside the namespaces, so names never collide in the host.
    ///
    /// The two ends get different interface indexes (`a_dev`'s is 1000 or more), as a real
    /// host's interface and its router's would. Two fresh namespaces would otherwise number
    /// both ends alike, and the kernel takes a device whose index equals its peer's for one
    /// that needs no hurry: it then holds each carrier change back until a second has passed
    /// since its last run over any device on the machine, merging what came in between
    /// (net/core/link_watch.c, `linkwatch_urgent_event`), so what a test sees would depend on
    /// what other namespaces did a moment before.
    pub fn veth(
        &self,
        a: &Namespace,
        a_dev: &str,
        b: &Namespace,
        b_dev: &str,
    ) -> Result<Veth, LabError> {
        // Unique in this process, so unique in `a` (made by this process).
        let index = (1000 + NEXT.fetch_add(1, Ordering::Relaxed)).to_string();
        process::output(cmd(
            "ip",
            [
                "link", "add", a_dev, "netns", &a.name, "index", &index, "type", "veth", "peer",
                "name", b_dev, "netns", &b.name,
            ],
        ))?;
        a.set_link(a_dev, true)?;
        b.set_link(b_dev, true)?;
        Ok(Veth { a_dev: a_dev.into(), b_dev: b_dev.into() })
    }

    /// Two hosts, "cli" and "srv", joined by a veth (`eth0` on each), dual-stack from the
    /// documentation prefixes, the client's default routes pointing at the server.
    pub fn pair(&self) -> Result<Pair, LabError> {
        let cli = self.namespace("cli")?;
        let srv = self.namespace("srv")?;
        self.veth(&cli, "eth0", &srv, "eth0")?;
        cli.add_address("eth0", addr::CLI_V4.into(), 24)?;
        srv.add_address("eth0", addr::SRV_V4.into(), 24)?;
        cli.add_address("eth0", addr::CLI_V6.into(), 64)?;
        srv.add_address("eth0", addr::SRV_V6.into(), 64)?;
        cli.ip(["route", "add", "default", "via", &addr::SRV_V4.to_string()])?;
        cli.ip(["-6", "route", "add", "default", "via", &addr::SRV_V6.to_string()])?;
        Ok(Pair { cli, srv, cli_dev: "eth0".into(), srv_dev: "eth0".into() })
    }
}

/// Two namespaces joined by a veth; see [`Lab::pair`]. Fields drop in order: the client first.
#[derive(Debug)]
pub struct Pair {
    /// The client's namespace.
    pub cli: Namespace,
    /// The server's namespace.
    pub srv: Namespace,
    /// The client's end of the veth.
    pub cli_dev: String,
    /// The server's end of the veth.
    pub srv_dev: String,
}

/// The two ends of a veth link. It disappears with either namespace.
#[derive(Debug, Clone)]
pub struct Veth {
    /// One end's name.
    pub a_dev: String,
    /// The other end's name.
    pub b_dev: String,
}

/// A transport protocol, for faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What a fault does to matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Silently discard: a blackhole; the sender waits for its timeout.
    Drop,
    /// Answer with a TCP reset: the sender fails at once (TCP only).
    Reset,
    /// Answer with ICMP host / ICMPv6 address unreachable: the sender fails at once.
    Unreachable,
}

/// A network namespace; dropping it kills what runs inside and deletes it.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    /// What `spawn` started, as (pid, start time in clock ticks): killed on drop even if it
    /// had not yet entered the namespace when `ip netns pids` looked, and never a later
    /// process that reused the pid.
    spawned: std::sync::Mutex<Vec<(libc::pid_t, u64)>>,
}

impl Namespace {
    /// Its name (`ip netns` knows it by it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace (through `ip netns exec`, so it also
    /// sees this namespace's sysfs, hosts and resolv.conf). Its stdin is /dev/null unless the
    /// caller sets another: a test's own stdin is never handed to a child.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program).stdin(std::process::Stdio::null());
        c
    }

    /// Runs a command inside the namespace to completion and returns its stdout.
    pub fn run<I, S>(&self, argv: I) -> Result<String, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut argv = argv.into_iter();
        let program = argv
            .next()
            .ok_or_else(|| LabError::Parse { command: "run".into(), why: "empty argv".into() })?;
        let mut c = self.command(program);
        c.args(argv);
        process::output(c)
    }

    /// Starts a command inside the namespace; the returned guard kills it on drop.
    pub fn spawn(&self, cmd: Command) -> Result<Child, LabError> {
        let child = Child::spawn(cmd)?;
        if let Ok(pid) = libc::pid_t::try_from(child.id())
            && let Some(start) = start_time(pid)
        {
            self.spawned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((pid, start));
        }
        Ok(child)
    }

    /// `ip -n NAME …`.
    pub fn ip<I, S>(&self, args: I) -> Result<String, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        process::output(c)
    }

    /// Adds an address (IPv6 without duplicate address detection, so it is usable at once).
    pub fn add_address(&self, dev: &str, ip: IpAddr, prefix_len: u8) -> Result<(), LabError> {
        let cidr = format!("{ip}/{prefix_len}");
        let mut args = vec!["addr", "add", &cidr, "dev", dev];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        self.ip(args).map(drop)
    }

    /// Sets a link administratively up or down. Setting one end of a veth down takes the
    /// carrier away from the other end.
    pub fn set_link(&self, dev: &str, up: bool) -> Result<(), LabError> {
        self.ip(["link", "set", dev, if up { "up" } else { "down" }]).map(drop)
    }

    /// Writes `/etc/netns/NAME/hosts`, which `ip netns exec` mounts over `/etc/hosts`.
    pub fn set_hosts(&self, text: &str) -> Result<(), LabError> {
        self.write_etc("hosts", text)
    }

    /// Writes `/etc/netns/NAME/resolv.conf`, which `ip netns exec` mounts over the real one.
    pub fn set_resolv_conf(&self, text: &str) -> Result<(), LabError> {
        self.write_etc("resolv.conf", text)
    }

    /// Puts `text` over /etc/`file` for the commands run in this namespace (`ip netns exec`
    /// bind-mounts each file of /etc/netns/NAME over its namesake).
    pub fn set_etc_file(&self, file: &str, text: &str) -> Result<(), LabError> {
        self.write_etc(file, text)
    }

    /// Loads an nftables ruleset inside the namespace (`nft -f`). nft 1.0.6 wants a newline or
    /// `;` after each closing brace inside a table; [`Namespace::fault`] writes correct rules.
    pub fn nft(&self, ruleset: &str) -> Result<(), LabError> {
        require_tool("nft", "nftables")?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("{}-{n}.nft", self.name));
        std::fs::write(&file, ruleset)?;
        let result = self.run(["nft", "-f", &file.to_string_lossy()]).map(drop);
        let _ = std::fs::remove_file(&file);
        result
    }

    /// Adds a fault on this namespace's output path: traffic to `daddr` (and `dport`, when
    /// given) over `proto` meets `action`. Faults stack; [`Namespace::clear_faults`] removes
    /// them all.
    pub fn fault(
        &self,
        daddr: IpAddr,
        proto: Proto,
        dport: Option<u16>,
        action: Fault,
    ) -> Result<(), LabError> {
        let family = if daddr.is_ipv4() { "ip" } else { "ip6" };
        let proto_name = match proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let port = dport
            .map(|p| format!(" {proto_name} dport {p}"))
            .unwrap_or_else(|| format!(" meta l4proto {proto_name}"));
        let verdict = match (action, daddr.is_ipv4()) {
            (Fault::Drop, _) => "drop",
            (Fault::Reset, _) => "reject with tcp reset",
            (Fault::Unreachable, true) => "reject with icmp type host-unreachable",
            (Fault::Unreachable, false) => "reject with icmpv6 type addr-unreachable",
        };
        self.nft(&format!(
            "add table inet nwlab\n\
             add chain inet nwlab out {{ type filter hook output priority 0; }}\n\
             add rule inet nwlab out {family} daddr {daddr}{port} {verdict}\n"
        ))
    }

    /// Removes every fault added with [`Namespace::fault`].
    pub fn clear_faults(&self) -> Result<(), LabError> {
        self.nft("add table inet nwlab\ndelete table inet nwlab\n")
    }

    /// The `Tcp:` counters of `/proc/net/snmp` inside this namespace.
    pub fn tcp_counters(&self) -> Result<TcpCounters, LabError> {
        TcpCounters::read(self)
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    fn write_etc(&self, file: &str, text: &str) -> Result<(), LabError> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(file), text)?;
        Ok(())
    }
}

/// A process's start time (field 22 of `/proc/PID/stat`), which tells it from a later
/// process with the same pid.
fn start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let spawned = std::mem::take(
            self.spawned.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (pid, start) in spawned {
            if start_time(pid) == Some(start) {
                // SAFETY: kill(2) touches no memory; the start time shows the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Ok(pids) = process::output(cmd("ip", ["netns", "pids", &self.name])) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()) {
                // SAFETY: kill(2) touches no memory; a stale pid at worst gets ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Err(e) = process::output(cmd("ip", ["netns", "del", &self.name])) {
            tracing::warn!("could not delete namespace {}: {e}", self.name);
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

fn cmd<const N: usize>(program: &str, args: [&str; N]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Fails with the package to install when a tool is not on PATH (the one check of it that
/// the lab, its tests and the benchmarks use).
pub fn require_tool(tool: &'static str, package: &'static str) -> Result<(), LabError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if found { Ok(()) } else { Err(LabError::MissingTool { tool, package }) }
}

/// Runs `f` on a fresh thread that has entered `ns`'s network namespace, and returns what it
/// returns. Sockets created there stay in that namespace wherever they are used afterwards
/// (`setns` is per thread; the caller's threads are untouched).
pub fn in_namespace<T, F>(ns: &Namespace, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(PathBuf::from("/run/netns").join(&ns.name))?;
    let thread = std::thread::Builder::new().name(format!("in-{}", ns.name)).spawn(move || {
        // SAFETY: setns(2) on an open namespace file descriptor, on this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    })?;
    match thread.join() {
        Ok(result) => Ok(result?),
        Err(_) => Err(LabError::Io(std::io::Error::other(
            "the function run inside the namespace panicked",
        ))),
    }
}
