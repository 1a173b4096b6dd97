//! From socket inodes to the processes that hold them, and what procfs says about those
//! processes. Reading a process's descriptors is the slow part (one `readlink` each), so it is
//! done once per process per batch of flows: each read records every socket the process
//! holds, the processes that made recent flows are read first, and a program making many
//! connections is found with one read however many of its flows arrive together.

use std::collections::{HashMap, VecDeque};
use std::fs;

use crate::flow::Process;

/// How many recent processes are read before all of them.
const RECENT: usize = 32;

/// Finds processes by socket inode.
#[derive(Debug, Default)]
pub(crate) struct Procfs {
    /// The processes that held recent flows' sockets, latest first.
    recent: VecDeque<u32>,
    /// Socket inode → the process whose descriptors showed it, from the reads of the recent
    /// processes (each read replaces that process's entries).
    holders: HashMap<u64, u32>,
    /// The inodes each recent process showed at its last read.
    shown: HashMap<u32, Vec<u64>>,
}

impl Procfs {
    /// The process holding each socket, with its details (`uid` is the socket owner's, from
    /// sock_diag), in order; `None` where no process holds it (any more). Each process is read
    /// and described at most once per call.
    pub(crate) fn processes(&mut self, sockets: &[(u64, u32)]) -> Vec<Option<Process>> {
        // Inode 0 is no process's socket (a TCP TIME_WAIT entry, a kernel socket): looking for
        // it would read every process in vain.
        let wanted: Vec<u64> =
            sockets.iter().map(|(inode, _)| *inode).filter(|inode| *inode != 0).collect();
        let found = self.holders_of(&wanted);
        let mut described: HashMap<(u32, u32), Option<Process>> = HashMap::new();
        sockets
            .iter()
            .map(|(inode, uid)| {
                let pid = *found.get(inode)?;
                described.entry((pid, *uid)).or_insert_with(|| describe(pid, *uid)).clone()
            })
            .collect()
    }

    /// The holder of each of `wanted` that could be found.
    fn holders_of(&mut self, wanted: &[u64]) -> HashMap<u64, u32> {
        let mut found = HashMap::new();
        let mut missing: Vec<u64> = Vec::new();
        for inode in wanted {
            // A holder seen before is believed only after its descriptors are read again
            // below; until then the inode counts as missing.
            if !missing.contains(inode) {
                missing.push(*inode);
            }
        }
        let mut read: Vec<u32> = Vec::new();
        // Recent holders first: the one remembered for a wanted inode, then the rest.
        let mut order: Vec<u32> =
            missing.iter().filter_map(|i| self.holders.get(i).copied()).collect();
        order.extend(self.recent.iter().copied());
        let mut tried = std::collections::HashSet::new();
        order.retain(|p| tried.insert(*p));
        for pid in order {
            if missing.is_empty() {
                break;
            }
            self.read(pid, &mut missing, &mut found);
            read.push(pid);
        }
        if !missing.is_empty() {
            let mut pids: Vec<u32> = pids().into_iter().filter(|p| !tried.contains(p)).collect();
            // Newest first: a flow's process is more often young than old.
            pids.sort_unstable_by(|a, b| b.cmp(a));
            for pid in pids {
                if missing.is_empty() {
                    break;
                }
                let before = missing.len();
                self.read(pid, &mut missing, &mut found);
                if missing.len() < before {
                    read.push(pid);
                } else {
                    // Only processes that held a wanted socket are remembered.
                    self.forget(pid);
                }
            }
        }
        for pid in read.iter().rev() {
            if found.values().any(|p| p == pid) {
                self.remember(*pid);
            }
        }
        found
    }

    /// Reads `pid`'s descriptors: records every socket it holds, and moves the wanted ones it
    /// holds from `missing` to `found`.
    fn read(&mut self, pid: u32, missing: &mut Vec<u64>, found: &mut HashMap<u64, u32>) {
        let inodes = socket_inodes(pid);
        if let Some(old) = self.shown.remove(&pid) {
            for i in old {
                if self.holders.get(&i) == Some(&pid) {
                    self.holders.remove(&i);
                }
            }
        }
        for i in &inodes {
            self.holders.insert(*i, pid);
        }
        missing.retain(|i| {
            let held = inodes.contains(i);
            if held {
                found.insert(*i, pid);
            }
            !held
        });
        self.shown.insert(pid, inodes);
    }

    fn remember(&mut self, pid: u32) {
        if let Some(at) = self.recent.iter().position(|p| *p == pid) {
            self.recent.remove(at);
        }
        self.recent.push_front(pid);
        while self.recent.len() > RECENT {
            if let Some(old) = self.recent.pop_back() {
                self.forget(old);
            }
        }
    }

    fn forget(&mut self, pid: u32) {
        if self.recent.contains(&pid) {
            return;
        }
        if let Some(old) = self.shown.remove(&pid) {
            for i in old {
                if self.holders.get(&i) == Some(&pid) {
                    self.holders.remove(&i);
                }
            }
        }
    }
}

/// Every process id, from /proc.
pub(crate) fn pids() -> Vec<u32> {
    fs::read_dir("/proc").map_or_else(
        |_| Vec::new(),
        |d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
    )
}

/// Each open descriptor of `pid`: its number and what it links to (`socket:[N]`,
/// `anon_inode:bpf-prog`, a path). Nothing when the process is gone or not ours to read.
pub(crate) fn descriptors(pid: u32) -> impl Iterator<Item = (String, String)> {
    fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().filter_map(|e| {
        let e = e.ok()?;
        let link = fs::read_link(e.path()).ok()?;
        Some((e.file_name().to_string_lossy().into_owned(), link.to_string_lossy().into_owned()))
    })
}

/// The inodes of the sockets `pid` holds. The hot path of attribution: each descriptor's link
/// is read relative to the open `/proc/PID/fd` (`readlinkat`, no walk of the whole path each
/// time), into one buffer, with no allocation per descriptor.
fn socket_inodes(pid: u32) -> Vec<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dir = format!("/proc/{pid}/fd");
    let (Ok(entries), Ok(handle)) = (fs::read_dir(&dir), fs::File::open(&dir)) else {
        return Vec::new();
    };
    let mut inodes = Vec::new();
    let mut link = [0u8; 64];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.as_bytes();
        // A descriptor's name is its number: at most 10 digits, then the NUL.
        let mut c_name = [0u8; 16];
        if name.is_empty() || name.len() >= c_name.len() {
            continue;
        }
        c_name[..name.len()].copy_from_slice(name);
        // SAFETY: readlinkat(2) with a live directory descriptor, a NUL-terminated name, and a
        // buffer it writes at most `link.len()` bytes of.
        let n = unsafe {
            libc::readlinkat(
                handle.as_raw_fd(),
                c_name.as_ptr().cast(),
                link.as_mut_ptr().cast(),
                link.len(),
            )
        };
        let Ok(n) = usize::try_from(n) else { continue };
        if let Some(inode) = socket_inode(&link[..n.min(link.len())]) {
            inodes.push(inode);
        }
    }
    inodes
}

/// The inode in a descriptor's link text, `socket:[N]`.
fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What procfs says about `pid`, identified as local network privacy identifies it.
pub(crate) fn describe(pid: u32, uid: u32) -> Option<Process> {
    let found = nw_lnp::identity::of_process(pid)?;
    Some(Process {
        pid,
        executable: found.executable,
        command_line: found.command_line,
        uid,
        cgroup: found.cgroup,
        identity: found.identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_socket_links_give_inodes() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        for other in [&b"pipe:[12]"[..], b"/dev/null", b"socket:[]", b"socket:[1x]", b"socket:[9"] {
            assert_eq!(socket_inode(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn sockets_of_this_process_are_found_in_one_read_and_closed_ones_are_not() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let inode = |s: &std::net::UdpSocket| {
            use std::os::fd::AsRawFd;
            let link = fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap_or_else(|e| panic!("{e}"));
            let link = link.to_string_lossy().into_owned();
            link.trim_start_matches("socket:[")
                .trim_end_matches(']')
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{link}: {e}"))
        };
        let (ia, ib) = (inode(&a), inode(&b));
        let me = std::process::id();
        let mut p = Procfs::default();
        let got = p.processes(&[(ia, 0), (ib, 0), (ia, 0)]);
        assert!(got.iter().all(|g| g.as_ref().map(|p| p.pid) == Some(me)), "{got:?}");
        assert_eq!(p.recent.front(), Some(&me));
        drop(b);
        let got = p.processes(&[(ib, 0), (ia, 0), (0, 0)]);
        assert_eq!(got[0], None, "a closed socket has no process");
        assert_eq!(got[2], None, "inode 0 is nobody's");
        assert_eq!(got[1].as_ref().map(|p| p.pid), Some(me));
        assert!(!p.holders.contains_key(&ib), "the closed socket was forgotten at the read");
    }
}
