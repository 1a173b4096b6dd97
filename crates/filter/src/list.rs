//! Every packet filter active on the host, ours or not: nftables chains (which include
//! iptables-nft's), iptables-legacy rules, NFQUEUE bindings, BPF programs attached to cgroups,
//! and tc filters — each with who owns it when that can be known. The network-namespaced ones
//! (all but cgroup BPF) are those of the caller's namespace. Tools that are missing or fail
//! are reported as problems, never as "no filters".

use std::collections::HashMap;
use std::fs;
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

use crate::sys::procfs;

/// What kind of filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An nftables chain (iptables-nft's chains are nftables chains too).
    Nftables,
    /// An iptables-legacy chain with rules.
    IptablesLegacy,
    /// A program bound to an NFQUEUE.
    Nfqueue,
    /// A BPF program attached to a cgroup.
    CgroupBpf,
    /// A tc filter.
    Tc,
}

impl Kind {
    /// The name shown in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::IptablesLegacy => "iptables-legacy",
            Self::Nfqueue => "nfqueue",
            Self::CgroupBpf => "cgroup-bpf",
            Self::Tc => "tc",
        }
    }
}

/// One filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// What kind.
    pub kind: Kind,
    /// Its name: `ip filter/OUTPUT`, `queue 7`, `/sys/fs/cgroup/x connect4 prog 12 name`.
    pub name: String,
    /// Where it sits: hook and priority, attach type, direction.
    pub hook: String,
    /// How many rules, when it has rules.
    pub rules: Option<u64>,
    /// Packet and byte counters, when it keeps them.
    pub counters: Option<(u64, u64)>,
    /// Who installed or holds it, when that can be known.
    pub owner: Option<String>,
}

/// Everything found, and what could not be looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    /// The filters.
    pub filters: Vec<Filter>,
    /// What could not be listed, and why.
    pub problems: Vec<String>,
}

/// Lists every filter.
pub fn list() -> Listing {
    let mut out = Listing::default();
    let procs = ProcFds::scan();
    nftables(&mut out);
    for tool in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        legacy(tool, &mut out);
    }
    for q in queue_bindings() {
        out.filters.push(Filter {
            kind: Kind::Nfqueue,
            name: format!("queue {}", q.queue),
            hook: format!("{} waiting, copy mode {}", q.waiting, q.copy_mode),
            rules: None,
            counters: None,
            owner: Some(
                netlink_owner(q.portid, &procs)
                    .unwrap_or_else(|| format!("netlink port {}", q.portid)),
            ),
        });
    }
    cgroup_bpf(&mut out, &procs);
    tc(&mut out);
    out
}

fn run(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{tool} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn nftables(out: &mut Listing) {
    let text = match run("nft", &["-j", "list", "ruleset"]) {
        Ok(t) => t,
        Err(e) => return out.problems.push(format!("nftables: {e}")),
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return out.problems.push("nftables: nft -j printed something that is not JSON".into());
    };
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    // Per chain: rules, counters; per table: whether iptables-nft made it (xt expressions).
    let mut rules: HashMap<(String, String, String), (u64, u64, u64)> = HashMap::new();
    let mut xt_tables: std::collections::HashSet<(String, String)> = Default::default();
    for item in &items {
        let Some(r) = item.get("rule") else { continue };
        let key = (s(&r["family"]), s(&r["table"]), s(&r["chain"]));
        let e = rules.entry(key).or_default();
        e.0 += 1;
        for x in r["expr"].as_array().into_iter().flatten() {
            if let Some(c) = x.get("counter") {
                e.1 += c["packets"].as_u64().unwrap_or(0);
                e.2 += c["bytes"].as_u64().unwrap_or(0);
            }
            if x.get("xt").is_some() {
                xt_tables.insert((s(&r["family"]), s(&r["table"])));
            }
        }
    }
    let ours = crate::sys::tables::existing().flatten();
    for item in &items {
        let Some(c) = item.get("chain") else { continue };
        let (family, table, name) = (s(&c["family"]), s(&c["table"]), s(&c["name"]));
        let hook = match c.get("hook") {
            Some(h) => format!(
                "{} hook {} priority {} policy {}",
                c["type"].as_str().unwrap_or("filter"),
                h.as_str().unwrap_or("?"),
                c["prio"],
                c["policy"].as_str().unwrap_or("accept")
            ),
            None => "regular chain (jumped to)".into(),
        };
        let (n, packets, bytes) =
            rules.get(&(family.clone(), table.clone(), name.clone())).copied().unwrap_or_default();
        let owner = if name.starts_with(crate::sys::tables::CHAIN) {
            Some(format!(
                "nwkit filter host{}",
                ours.map_or_else(String::new, |p| format!(" (pid {p})"))
            ))
        } else if xt_tables.contains(&(family.clone(), table.clone())) {
            Some("iptables-nft".into())
        } else {
            None
        };
        out.filters.push(Filter {
            kind: Kind::Nftables,
            name: format!("{family} {table}/{name}"),
            hook,
            rules: Some(n),
            counters: (packets > 0 || bytes > 0).then_some((packets, bytes)),
            owner,
        });
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn legacy(tool: &str, out: &mut Listing) {
    let text = match run(tool, &["-c"]) {
        Ok(t) => t,
        Err(e) => return out.problems.push(format!("iptables-legacy: {e}")),
    };
    let family = if tool.starts_with("ip6") { "ip6" } else { "ip" };
    let mut table = String::new();
    let mut chains: Vec<(String, String, u64, u64, u64)> = Vec::new(); // name, policy, rules, packets, bytes
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        } else if let Some(c) = line.strip_prefix(':') {
            let mut it = c.split_whitespace();
            let name = it.next().unwrap_or_default().to_owned();
            let policy = it.next().unwrap_or("-").to_owned();
            chains.push((format!("{table}/{name}"), policy, 0, 0, 0));
        } else if line.starts_with('[') && line.contains("-A ") {
            // [packets:bytes] -A CHAIN ...
            let counts = line[1..].split(']').next().unwrap_or("0:0");
            let (p, b) = counts.split_once(':').unwrap_or(("0", "0"));
            let chain =
                line.split("-A ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
            let want = format!("{table}/{chain}");
            if let Some(c) = chains.iter_mut().find(|c| c.0 == want) {
                c.2 += 1;
                c.3 += p.parse().unwrap_or(0);
                c.4 += b.parse().unwrap_or(0);
            }
        }
    }
    for (name, policy, rules, packets, bytes) in chains {
        if rules == 0 && (policy == "ACCEPT" || policy == "-") {
            continue; // an empty chain that lets everything through filters nothing
        }
        out.filters.push(Filter {
            kind: Kind::IptablesLegacy,
            name: format!("{family} {name}"),
            hook: format!("policy {policy}"),
            rules: Some(rules),
            counters: Some((packets, bytes)),
            owner: None,
        });
    }
}

/// A program bound to an NFQUEUE (`/proc/net/netfilter/nfnetlink_queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueBinding {
    /// The queue's number.
    pub queue: u16,
    /// The netlink port of the socket bound to it.
    pub portid: u32,
    /// Packets waiting for a verdict.
    pub waiting: u64,
    /// 0 none, 1 metadata, 2 packet.
    pub copy_mode: u8,
    /// Packets the kernel dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets the kernel could not deliver to the program (its socket buffer was full).
    pub user_dropped: u64,
}

/// The NFQUEUE bindings of the caller's network namespace.
pub fn queue_bindings() -> Vec<QueueBinding> {
    let text = fs::read_to_string("/proc/net/netfilter/nfnetlink_queue").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            Some(QueueBinding {
                queue: u16::try_from(*f.first()?).ok()?,
                portid: u32::try_from(*f.get(1)?).ok()?,
                waiting: *f.get(2)?,
                copy_mode: u8::try_from(*f.get(3)?).ok()?,
                queue_dropped: *f.get(5)?,
                user_dropped: *f.get(6)?,
            })
        })
        .collect()
}

/// Every process's descriptors, read once: socket inodes and BPF program ids to pids.
struct ProcFds {
    sockets: HashMap<u64, u32>,
    bpf_progs: HashMap<u32, u32>,
}

impl ProcFds {
    fn scan() -> Self {
        let mut me = Self { sockets: HashMap::new(), bpf_progs: HashMap::new() };
        for pid in procfs::pids() {
            for (fd, link) in procfs::descriptors(pid) {
                if let Some(inode) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                {
                    if let Ok(i) = inode.parse() {
                        me.sockets.insert(i, pid);
                    }
                } else if link == "anon_inode:bpf-prog" {
                    let info =
                        fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
                    if let Some(id) = info
                        .lines()
                        .find_map(|l| l.strip_prefix("prog_id:"))
                        .and_then(|v| v.trim().parse().ok())
                    {
                        me.bpf_progs.insert(id, pid);
                    }
                }
            }
        }
        me
    }
}

fn process_name(pid: u32) -> String {
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if exe.is_empty() { format!("pid {pid} ({})", comm.trim()) } else { format!("pid {pid} {exe}") }
}

/// The process holding the netlink socket with port `portid` (`/proc/net/netlink`).
fn netlink_owner(portid: u32, procs: &ProcFds) -> Option<String> {
    let text = fs::read_to_string("/proc/net/netlink").ok()?;
    let inode = text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"12") && f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(portid))
            .then(|| f.get(9)?.parse::<u64>().ok())
            .flatten()
    })?;
    procs.sockets.get(&inode).map(|pid| process_name(*pid))
}

/// The attach types that concern networking (`enum bpf_attach_type`), with their names.
const ATTACH_TYPES: [(u32, &str); 14] = [
    (0, "ingress"),
    (1, "egress"),
    (2, "sock_create"),
    (3, "sock_ops"),
    (8, "bind4"),
    (9, "bind6"),
    (10, "connect4"),
    (11, "connect6"),
    (12, "post_bind4"),
    (13, "post_bind6"),
    (14, "sendmsg4"),
    (15, "sendmsg6"),
    (19, "recvmsg4"),
    (20, "recvmsg6"),
];

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one. `ip netns exec` gives its command a fresh /sys
/// without cgroup mounts; then init's mounts are used, through `/proc/1/root`.
fn cgroup2_mounts() -> Vec<std::path::PathBuf> {
    let find = |mounts: &str, prefix: &str| -> Vec<std::path::PathBuf> {
        mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2"))
                    .then(|| f.get(1).map(|m| std::path::PathBuf::from(format!("{prefix}{m}"))))
                    .flatten()
            })
            .collect()
    };
    let own = find(&fs::read_to_string("/proc/self/mounts").unwrap_or_default(), "");
    if !own.is_empty() {
        return own;
    }
    find(&fs::read_to_string("/proc/1/mounts").unwrap_or_default(), "/proc/1/root")
}

fn cgroup_bpf(out: &mut Listing, procs: &ProcFds) {
    let roots = cgroup2_mounts();
    if roots.is_empty() {
        out.problems.push("cgroup BPF: no cgroup v2 hierarchy is mounted".into());
    }
    let mut dirs: Vec<(std::path::PathBuf, usize)> = roots.into_iter().map(|r| (r, 0)).collect();
    let mut seen = 0usize;
    while let Some((dir, depth)) = dirs.pop() {
        seen += 1;
        if seen > 100_000 {
            out.problems
                .push("cgroup BPF: more than 100,000 cgroups; the rest were not looked at".into());
            break;
        }
        match crate::sys::bpf::attached(&dir, &ATTACH_TYPES.map(|(t, _)| t)) {
            Ok(found) => {
                for (attach, prog) in found {
                    let attach_name =
                        ATTACH_TYPES.iter().find(|(t, _)| *t == attach).map_or("?", |(_, n)| n);
                    let owner =
                        procs.bpf_progs.get(&prog.id).map(|pid| process_name(*pid)).unwrap_or_else(
                            || format!("loaded by uid {}; no process holds it", prog.uid),
                        );
                    out.filters.push(Filter {
                        kind: Kind::CgroupBpf,
                        name: format!(
                            "{} prog {} {}",
                            dir.to_string_lossy().trim_start_matches("/proc/1/root"),
                            prog.id,
                            prog.name
                        ),
                        hook: attach_name.into(),
                        rules: None,
                        counters: None,
                        owner: Some(owner),
                    });
                }
            }
            Err(e) if depth == 0 => {
                out.problems.push(format!(
                    "cgroup BPF: {}: {e} (`ip netns exec` hides the cgroup mounts; enter only the network namespace, with `nsenter --net=/run/netns/NAME`)",
                    dir.display()
                ));
                continue;
            }
            Err(_) => {}
        }
        if depth < 16
            && let Ok(rd) = fs::read_dir(&dir)
        {
            dirs.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| (e.path(), depth + 1)),
            );
        }
    }
}

fn tc(out: &mut Listing) {
    let qdiscs = match run("tc", &["-j", "qdisc", "show"]) {
        Ok(t) => serde_json::from_str::<Value>(&t).unwrap_or_default(),
        Err(e) => return out.problems.push(format!("tc: {e}")),
    };
    let mut devices: Vec<(String, bool)> = Vec::new();
    for q in qdiscs.as_array().into_iter().flatten() {
        let dev = s(&q["dev"]);
        let clsact = matches!(q["kind"].as_str(), Some("clsact" | "ingress"));
        match devices.iter_mut().find(|d| d.0 == dev) {
            Some(d) => d.1 |= clsact,
            None => devices.push((dev, clsact)),
        }
    }
    for (dev, clsact) in devices {
        let mut places = vec![None];
        if clsact {
            places.extend([Some("ingress"), Some("egress")]);
        }
        for place in places {
            let mut args = vec!["-j", "filter", "show", "dev", &dev];
            args.extend(place);
            let Ok(text) = run("tc", &args) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            for f in v.as_array().into_iter().flatten() {
                // A filter is listed once per protocol/priority; the entries with options are
                // the filters themselves.
                if f.get("options").is_none() {
                    continue;
                }
                out.filters.push(Filter {
                    kind: Kind::Tc,
                    name: format!(
                        "dev {dev} {} pref {} {}",
                        place.unwrap_or("root"),
                        f["pref"],
                        s(&f["kind"])
                    ),
                    hook: format!("protocol {}", s(&f["protocol"])),
                    rules: None,
                    counters: None,
                    owner: None,
                });
            }
        }
    }
}
