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

#[allow(clippy::disallowed_methods, reason = "sys code: bounds a child process with a short poll")]
fn run_bounded(program: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().ok()? {
            if !status.success() {
                return None;
            }
            let mut out = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
            return Some(out);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
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
