//! sysfs facts about links, the resolver configuration, and NetworkManager's metered value.
//!
//! sysfs shows the network namespace it was mounted in; `ip netns exec` remounts it, so run
//! per-namespace code as a child of `ip netns exec` (see the lab's notes).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::interface::LinkFacts;

pub(super) fn fill_facts(name: &str, facts: &mut LinkFacts) {
    let dir = Path::new("/sys/class/net").join(name);
    facts.wireless = dir.join("wireless").exists() || dir.join("phy80211").exists();
    facts.has_device = dir.join("device").exists();
    facts.devtype =
        std::fs::read_to_string(dir.join("uevent")).ok().and_then(|text| uevent_devtype(&text));
}

fn uevent_devtype(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("DEVTYPE=")).map(str::to_owned)
}

/// `nameserver` lines of a resolv.conf; unreadable or malformed lines are skipped.
pub(super) fn name_servers(path: &Path) -> Vec<IpAddr> {
    std::fs::read_to_string(path).map(|t| parse_resolv_conf(&t)).unwrap_or_default()
}

fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        // A scoped IPv6 address (fe80::1%eth0) names its interface after '%'.
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect()
}

/// NetworkManager's per-device metered value by interface name, when `nmcli` is installed and
/// answers within a second. Without NetworkManager this is empty and cost comes from the other
/// sources; without `nmcli` on `PATH` nothing is started at all.
pub(crate) fn networkmanager_metered() -> BTreeMap<String, bool> {
    if !networkmanager_present() {
        return BTreeMap::new();
    }
    run_bounded("nmcli", &["-t", "-f", "GENERAL.DEVICE,GENERAL.METERED", "device", "show"])
        .map(|text| parse_nmcli(&text))
        .unwrap_or_default()
}

/// Whether an `nmcli` is on `PATH` (a few `stat`s, where starting a process that is not there
/// costs a fork and an `exec` per directory).
pub(crate) fn networkmanager_present() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join("nmcli"))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `nmcli monitor` and calls `changed` for each line it prints (a device's state, a
/// connection profile changed: a metered value may have changed with it, the user toggling
/// "metered" in the settings among them, with nothing for the kernel to tell), until it ends
/// or `changed` answers false. Blocks: run it on a thread of its own. The child is told to end
/// when that thread ends (`PR_SET_PDEATHSIG`), so a process that exits leaves none behind.
pub(crate) fn networkmanager_monitor(mut changed: impl FnMut() -> bool) {
    use std::io::{BufRead as _, Read as _};
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new("nmcli");
    cmd.arg("monitor").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: between fork and exec only prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let Ok(mut child) = cmd.spawn() else { return };
    if let Some(out) = child.stdout.take() {
        // Lines are short; one that is not is cut, not kept whole.
        let mut lines = std::io::BufReader::new(out);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut lines).take(4096).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if !changed() => break,
                Ok(_) => {}
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn parse_nmcli(text: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let mut device = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("GENERAL.DEVICE:") {
            device = Some(d.to_owned());
        } else if let (Some(m), Some(d)) = (line.strip_prefix("GENERAL.METERED:"), device.take()) {
            // "yes", "no", "yes (guessed)", "no (guessed)", "unknown"
            match m.split_whitespace().next() {
                Some("yes") => drop(out.insert(d, true)),
                Some("no") => drop(out.insert(d, false)),
                _ => {}
            }
        }
    }
    out
}

/// Most output read from a cost source; past it the answer is dropped.
const OUTPUT_LIMIT: usize = 1 << 20;

/// Runs `program` for at most a second and returns its output when it exits with success.
/// Output is drained as it comes (a full pipe cannot stall the child) and, once the child has
/// exited, only what is already there is read: a process it left behind holding the pipe
/// cannot hold us.
#[allow(clippy::disallowed_methods, reason = "sys code: bounds a child process with a short poll")]
fn run_bounded(program: &str, args: &[&str]) -> Option<String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let fd = stdout.as_raw_fd();
    // SAFETY: fcntl on a descriptor `stdout` owns and keeps open; it only changes its flags.
    let nonblocking = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    let (mut out, mut buf) = (Vec::new(), [0u8; 8192]);
    let answer = nonblocking
        .then(|| {
            for _ in 0..100 {
                // Asked before draining: everything an exited child wrote is in the pipe.
                let exited = child.try_wait().ok()?;
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if out.len() + n > OUTPUT_LIMIT => return None,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return None,
                    }
                }
                if let Some(status) = exited {
                    return status.success().then(|| String::from_utf8_lossy(&out).into_owned());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        })
        .flatten();
    let _ = child.kill();
    let _ = child.wait();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lines() {
        let t = "# c\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\nnameserver\n";
        let got = parse_resolv_conf(t);
        assert_eq!(got, ["192.0.2.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
    }

    /// The bound holds against what a cost source might do: leave a process behind holding
    /// its output (the answer comes at once, not when that process ends), write more than a
    /// pipe holds, never finish, or fail.
    #[test]
    #[allow(clippy::disallowed_methods, reason = "times real child processes")]
    fn a_child_process_is_bounded_whatever_it_does() {
        let run = |script: &str| {
            let started = std::time::Instant::now();
            (run_bounded("sh", &["-c", script]), started.elapsed())
        };
        let (out, took) = run("(sleep 5 &); echo GENERAL.DEVICE:eth0");
        assert_eq!(out.as_deref(), Some("GENERAL.DEVICE:eth0\n"));
        assert!(took < Duration::from_millis(900), "waited for the process left behind: {took:?}");
        let (out, took) = run("head -c 100000 /dev/zero | tr '\\0' x");
        assert_eq!(out.map(|o| o.len()), Some(100_000), "more than a pipe holds, in {took:?}");
        let (out, took) = run("head -c 2000000 /dev/zero");
        assert_eq!(out, None, "past the output limit");
        assert!(took < Duration::from_millis(900), "{took:?}");
        let (out, took) = run("sleep 5");
        assert_eq!(out, None);
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
        assert_eq!(run("echo partial; exit 1").0, None, "a failing source says nothing");
        assert_eq!(run_bounded("/nonexistent/nmcli", &[]), None);
    }

    #[test]
    fn nmcli_terse_output() {
        let t = "GENERAL.DEVICE:eth0\nGENERAL.METERED:no (guessed)\n\nGENERAL.DEVICE:wwan0\nGENERAL.METERED:yes\n\nGENERAL.DEVICE:lo\nGENERAL.METERED:unknown\n";
        let got = parse_nmcli(t);
        assert_eq!(got.get("eth0"), Some(&false));
        assert_eq!(got.get("wwan0"), Some(&true));
        assert_eq!(got.get("lo"), None);
    }

    #[test]
    fn uevent() {
        assert_eq!(uevent_devtype("INTERFACE=wlan0\nDEVTYPE=wlan\n").as_deref(), Some("wlan"));
        assert_eq!(uevent_devtype("INTERFACE=eth0\n"), None);
    }
}
