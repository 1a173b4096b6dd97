//! An NFQUEUE packet delayer: packets matched by an iptables rule wait `delay` before the
//! kernel lets them go. This kernel has no netem and no nft `queue` statement, so the rule is
//! `iptables -j NFQUEUE` (the xt target through nft's compat layer).
//!
//! The queue itself is `nw_filter::nfqueue` (bound with copy mode META; each packet is
//! accepted once its delay has passed). Without `--queue-bypass`, an unattended queue drops:
//! fail closed.
//! The guard therefore removes the rule first and releases every held packet before it unbinds.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nw_filter::nfqueue::{self, Queue, Verdict};

use crate::{LabError, Namespace};

/// Which packet families a delayer's rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// `iptables` only.
    Ipv4,
    /// `ip6tables` only.
    Ipv6,
    /// Both, feeding the same queue.
    Both,
}

impl Tables {
    fn commands(self) -> &'static [&'static str] {
        match self {
            Self::Ipv4 => &["iptables"],
            Self::Ipv6 => &["ip6tables"],
            Self::Both => &["iptables", "ip6tables"],
        }
    }
}

/// A running delayer; dropping it removes its rule and releases every held packet.
#[derive(Debug)]
pub struct Delayer {
    ns_name: String,
    tables: Tables,
    /// How many of `tables.commands()` have their rule installed.
    installed: usize,
    rule: Vec<String>,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Delayer {
    /// Binds queue `queue` in `ns`, then installs `iptables -t mangle -A <rule…> -j NFQUEUE
    /// --queue-num <queue>` there (and/or `ip6tables`, per `tables`). `rule` is the chain and
    /// match, e.g. `["OUTPUT", "-p", "tcp", "--dport", "8080"]`.
    pub fn start(
        ns: &Namespace,
        queue: u16,
        delay: Duration,
        tables: Tables,
        rule: &[&str],
    ) -> Result<Self, LabError> {
        for tool in tables.commands() {
            crate::netns::require_tool(tool, "iptables")?;
        }
        let fd = crate::in_namespace(ns, move || bind(queue))??;
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (st, count) = (stop.clone(), delayed.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lab-nfq-{queue}"))
            .spawn(move || run(&fd, delay, &st, &count))?;
        let mut rule: Vec<String> = rule.iter().map(|s| (*s).to_owned()).collect();
        rule.extend(["-j", "NFQUEUE", "--queue-num"].map(str::to_owned));
        rule.push(queue.to_string());
        let mut me = Self {
            ns_name: ns.name().to_owned(),
            tables,
            installed: 0,
            rule,
            stop,
            delayed,
            thread: Some(thread),
        };
        for tool in tables.commands() {
            me.iptables(tool, "-A")?; // on error, drop removes what was installed
            me.installed += 1;
        }
        Ok(me)
    }

    /// How many packets have been held and released so far.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    fn iptables(&self, tool: &str, op: &str) -> Result<(), LabError> {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns_name, tool, "-t", "mangle", op]).args(&self.rule);
        crate::process::output(c).map(drop)
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        for tool in &self.tables.commands()[..self.installed] {
            let _ = self.iptables(tool, "-D");
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(queue: u16) -> Result<Queue, LabError> {
    Queue::bind(queue, nfqueue::Copy::Meta, 4096, 0, true).map_err(LabError::Io)
}

fn verdict(q: &Queue, id: u32) {
    let _ = q.verdict(id, Verdict::Accept, None);
}

#[allow(clippy::disallowed_methods, reason = "lab delayer: holds packets on the wall clock")]
fn run(q: &Queue, delay: Duration, stop: &AtomicBool, delayed: &AtomicU64) {
    let mut held: std::collections::VecDeque<(Instant, u32)> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, id)) = held.pop_front() {
                verdict(q, id);
                delayed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = held
            .front()
            .map_or(Duration::from_millis(50), |(due, _)| due.saturating_duration_since(now));
        let wait = wait.clamp(Duration::from_micros(100), Duration::from_millis(50));
        let mut pfd = libc::pollfd { fd: q.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(50);
        // SAFETY: poll(2) on one live pollfd.
        if unsafe { libc::poll(&raw mut pfd, 1, ms) } <= 0 {
            continue;
        }
        let Ok(n) = q.recv(&mut buf) else { continue };
        let arrived = Instant::now();
        for p in nfqueue::packets(&buf[..n]) {
            held.push_back((arrived + delay, p.id));
        }
    }
    // Release everything still held; dropping the queue unbinds it.
    for (_, id) in held.drain(..) {
        verdict(q, id);
    }
}
