//! From a socket's inode to the process that holds it, and what procfs says about that
//! process. Scanning every process's descriptors is the slow part, so the processes that made
//! recent flows are looked at first: a program making many connections is found at once.

use std::collections::VecDeque;
use std::fs;

use crate::flow::Process;

/// How many recent processes are looked at before all of them.
const RECENT: usize = 32;

/// Finds processes by socket inode.
#[derive(Debug, Default)]
pub(crate) struct Procfs {
    recent: VecDeque<u32>,
}

impl Procfs {
    /// The process holding socket `inode`, with its details, or `None` when no process holds
    /// it (any more). `uid` is the socket owner's, from sock_diag.
    pub(crate) fn process(&mut self, inode: u64, uid: u32) -> Option<Process> {
        let pid = self.holder(inode)?;
        if let Some(at) = self.recent.iter().position(|p| *p == pid) {
            self.recent.remove(at);
        }
        self.recent.push_front(pid);
        self.recent.truncate(RECENT);
        describe(pid, uid)
    }

    fn holder(&self, inode: u64) -> Option<u32> {
        if let Some(pid) = self.recent.iter().copied().find(|p| holds(*p, inode)) {
            return Some(pid);
        }
        let mut pids: Vec<u32> = pids().into_iter().filter(|p| !self.recent.contains(p)).collect();
        // Newest first: a flow's process is more often young than old.
        pids.sort_unstable_by(|a, b| b.cmp(a));
        pids.into_iter().find(|p| holds(*p, inode))
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

/// Whether process `pid` has a descriptor on socket `inode`.
fn holds(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    descriptors(pid).any(|(_, link)| link == want)
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
