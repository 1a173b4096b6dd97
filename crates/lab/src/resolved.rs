//! systemd-resolved, the real one, inside a lab namespace, with a system bus of its own — so
//! the tunnel host's split DNS through resolved is tested against what desktop distributions
//! run, without touching this machine's resolver.
//!
//! The binary comes from Debian's `systemd-resolved` package unpacked, never installed
//! (installing it would take over this machine's resolv.conf): `scripts/test` unpacks it to
//! [`UNPACKED`]; `NW_TEST_RESOLVED` names another binary. It needs `libsystemd-shared` from
//! the `systemd` package and `dbus-daemon`.
//!
//! Inside the namespace (through `ip netns exec`, which gives each command a mount namespace
//! of its own and this namespace's files over /etc): a passwd and group that know the
//! `systemd-resolve` user it drops to, a directory of the test's over /run/systemd for its
//! runtime files,
//! resolv.conf naming its stub, and a `dbus-daemon` on a socket in a scratch directory that
//! commands find through `DBUS_SYSTEM_BUS_ADDRESS`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Child, LabError, Namespace, Scratch, require_tool};

/// Where `scripts/test` unpacks the `systemd-resolved` package.
pub const UNPACKED: &str = "/var/tmp/nwkit-resolved";
/// The user resolved drops to; any uid the namespace's passwd gives it will do.
const USER_LINE: &str = "systemd-resolve:x:64953:64953:systemd Resolver:/:/usr/sbin/nologin\n";
const GROUP_LINE: &str = "systemd-resolve:x:64953:\n";

/// A bus that lets everyone own and call everything: this bus has one service and one client.
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

/// systemd-resolved and its bus, running in a namespace; dropping it stops both.
#[derive(Debug)]
pub struct Resolved {
    resolved: Child,
    bus: Child,
    address: String,
    /// The bus's socket and configuration, and resolved's runtime directory.
    scratch: Scratch,
}

/// The resolved binary to run.
fn binary() -> Result<PathBuf, LabError> {
    let path = std::env::var_os("NW_TEST_RESOLVED").map_or_else(
        || PathBuf::from(UNPACKED).join("lib/systemd/systemd-resolved"),
        PathBuf::from,
    );
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::Parse {
            command: "systemd-resolved".into(),
            why: format!(
                "{} is missing; scripts/test unpacks Debian's systemd-resolved there (apt-get download systemd-resolved && dpkg-deb -x systemd-resolved_*.deb {UNPACKED}), or set NW_TEST_RESOLVED",
                path.display()
            ),
        })
    }
}

impl Resolved {
    /// Starts a bus and resolved in `ns`, and waits until resolved is on the bus. Leaves
    /// `ns`'s resolv.conf naming resolved's stub.
    pub fn start(ns: &Namespace) -> Result<Self, LabError> {
        require_tool("dbus-daemon", "dbus-daemon")?;
        require_tool("busctl", "systemd")?;
        let binary = binary()?;
        let passwd = std::fs::read_to_string("/etc/passwd")? + USER_LINE;
        let group = std::fs::read_to_string("/etc/group")? + GROUP_LINE;
        ns.set_etc_file("passwd", &passwd)?;
        ns.set_etc_file("group", &group)?;
        ns.set_resolv_conf("nameserver 127.0.0.53\noptions edns0 trust-ad\n")?;

        let scratch = Scratch::new(&format!("resolved-{}", ns.name()))?;
        let socket = scratch.path().join("bus");
        let config = scratch.path().join("bus.conf");
        std::fs::write(&config, BUS_CONFIG.replace("SOCKET", &socket.to_string_lossy()))?;
        let mut cmd = ns.command("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null());
        let bus = ns.spawn(cmd)?;
        let address = format!("unix:path={}", socket.display());
        wait_for("the lab's system bus", || socket.exists())?;

        // resolved refuses a runtime directory it does not own, so it gets a fresh one, where
        // the test can read the resolv.conf it writes.
        std::fs::create_dir_all("/run/systemd")?;
        let run = scratch.path().join("run");
        std::fs::create_dir_all(&run)?;
        let mut cmd = ns.command("sh");
        cmd.args(["-c", "mount --bind \"$1\" /run/systemd && exec \"$0\""])
            .arg(&binary)
            .arg(&run)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .env("SYSTEMD_LOG_LEVEL", "info")
            .stdout(Stdio::null());
        let resolved = ns.spawn(cmd)?;
        let mut started = Self { resolved, bus, address, scratch };
        let on_bus = wait_for("systemd-resolved on the lab's bus", || {
            started
                .busctl(
                    ns,
                    &[
                        "call",
                        "org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus",
                        "NameHasOwner",
                        "s",
                        "org.freedesktop.resolve1",
                    ],
                )
                .is_ok_and(|out| out.trim() == "b true")
        });
        if let Err(e) = on_bus {
            let exited = started.resolved.try_wait().ok().flatten();
            return Err(LabError::Parse {
                command: binary.display().to_string(),
                why: format!("{e} (resolved: {exited:?})"),
            });
        }
        Ok(started)
    }

    /// The resolv.conf resolved writes for programs that do not ask it over D-Bus (its stub,
    /// and the search domains of every link), which /etc/resolv.conf links to where resolved
    /// is in charge.
    pub fn stub_resolv_conf(&self) -> Result<String, LabError> {
        Ok(std::fs::read_to_string(self.scratch.path().join("run/resolve/stub-resolv.conf"))?)
    }

    /// The bus's address, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// Runs `busctl --system ARGS` in `ns` against this bus; returns its stdout.
    pub fn busctl(&self, ns: &Namespace, args: &[&str]) -> Result<String, LabError> {
        let mut cmd = ns.command("busctl");
        cmd.arg("--system").args(args).env("DBUS_SYSTEM_BUS_ADDRESS", &self.address);
        crate::process::output(cmd)
    }

    /// Gives `device` the DNS server `server` and makes it resolved's default route, as a
    /// network manager would for the uplink.
    pub fn set_uplink(
        &self,
        ns: &Namespace,
        device: &str,
        server: std::net::Ipv4Addr,
    ) -> Result<(), LabError> {
        let index = link_index(ns, device)?;
        let octets = server.octets().map(|o| o.to_string());
        let mut args = vec![
            "call",
            "org.freedesktop.resolve1",
            "/org/freedesktop/resolve1",
            "org.freedesktop.resolve1.Manager",
            "SetLinkDNS",
            "ia(iay)",
            &index,
            "1",
            "2",
            "4",
        ];
        args.extend(octets.iter().map(String::as_str));
        self.busctl(ns, &args)?;
        Ok(())
    }

    /// What resolved holds for `device`, as `busctl get-property` prints it: the DNS servers
    /// and the domains.
    pub fn link(&self, ns: &Namespace, device: &str) -> Result<(String, String), LabError> {
        let index = link_index(ns, device)?;
        let path = self.busctl(
            ns,
            &[
                "call",
                "org.freedesktop.resolve1",
                "/org/freedesktop/resolve1",
                "org.freedesktop.resolve1.Manager",
                "GetLink",
                "i",
                &index,
            ],
        )?;
        let path = path.trim().trim_start_matches("o ").trim_matches('"').to_owned();
        let property = |name: &str| {
            self.busctl(
                ns,
                &[
                    "get-property",
                    "org.freedesktop.resolve1",
                    &path,
                    "org.freedesktop.resolve1.Link",
                    name,
                ],
            )
            .map(|s| s.trim().to_owned())
        };
        Ok((property("DNS")?, property("Domains")?))
    }

    /// Whether resolved still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.resolved.try_wait(), Ok(None)) && matches!(self.bus.try_wait(), Ok(None))
    }
}

fn link_index(ns: &Namespace, device: &str) -> Result<String, LabError> {
    let out = ns.run(["cat", &format!("/sys/class/net/{device}/ifindex")])?;
    Ok(out.trim().to_owned())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), LabError> {
    let limit = Duration::from_secs(10);
    #[allow(clippy::disallowed_methods, reason = "a lab setup deadline")]
    let began = Instant::now();
    while !done() {
        if began.elapsed() > limit {
            return Err(LabError::Timeout { what: what.into(), ms: limit.as_millis() });
        }
        #[allow(clippy::disallowed_methods, reason = "polling a lab service")]
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
