//! The filter's firewall rules, in the filter table's OUTPUT chain through iptables (the xt
//! NFQUEUE target; this kernel has no native nft `queue` statement). Only a flow's first
//! packets are queued: a final verdict is kept as a conntrack mark, and the rest of an allowed
//! flow returns at the chain's first rules without leaving the kernel.
//!
//! ```text
//! OUTPUT  ! -o lo -m comment --comment "nwkit filter (pid N)" -j NWFILTER     (first)
//! NWFILTER
//!   -m mark --mark ALLOW/MASK -j NWFILTER-ALLOW   a packet given "allow" comes back (REPEAT)
//!   -m connmark --mark ALLOW/MASK -j RETURN       the rest of an allowed flow
//!   -m mark --mark DROP/MASK -j NWFILTER-DROP     a packet given "drop" comes back
//!   -m mark ! --mark PEEK/PEEK -m connmark --mark PEEK/PEEK -m conntrack ! --ctstate NEW
//!     -j NFQUEUE ...                              a peeked flow's packets after its SYN: the
//!                                                 host holds its bytes until the data verdict
//!   -m mark --mark PEEK/PEEK -j NWFILTER-PEEK     a packet given "pass" comes back (the SYN
//!                                                 of a flow to peek at, or passed bytes)
//!   -m connmark --mark PEEK/PEEK -j RETURN        ... and goes on (as does a resent SYN)
//!   -p tcp --syn -m conntrack --ctstate NEW -j NFQUEUE --queue-num Q [--queue-bypass]
//!   -p udp -m conntrack --ctstate NEW -j NFQUEUE --queue-num Q [--queue-bypass]
//!
//! INPUT   ! -i lo -m comment --comment "nwkit filter (pid N)" -j NWFILTER-IN  (first)
//! NWFILTER-IN     inbound flows (every new flow's scope only; empty otherwise)
//!   -p udp --sport 53 -m conntrack --ctstate ESTABLISHED -m mark ! --mark DNS/DNS
//!     -j NWFILTER-DNS                             a DNS answer to a query of this host's
//!   -p tcp --sport 53 -m conntrack --ctstate ESTABLISHED -m connmark --mark ALLOW/MASK
//!     -m mark ! --mark DNS/DNS -j NWFILTER-DNS    ... and over TCP, on allowed connections
//!   -m mark --mark ALLOW/MASK -j NWFILTER-ALLOW
//!   -m connmark --mark ALLOW/MASK -j RETURN       the rest of an allowed flow, both ways
//!   -m mark --mark DROP/MASK -j NWFILTER-DROP     REJECT answers the peer
//!   -m mark ! --mark PEEK/PEEK -m connmark --mark BOTH/BOTH -m conntrack ! --ctstate NEW
//!     -j NFQUEUE ...                              the peer's packets of a flow peeked at
//!                                                 both ways
//!   -m mark --mark PEEK/PEEK -j NWFILTER-PEEK
//!   -m connmark --mark PEEK/PEEK -j RETURN
//!   -p tcp --syn -m conntrack --ctstate NEW -j NFQUEUE --queue-num Q [--queue-bypass]
//!   -p udp -m conntrack --ctstate NEW -j NFQUEUE --queue-num Q [--queue-bypass]
//! NWFILTER-DNS    mark the answer DNS, queue it with --queue-bypass: the host reads which
//!                 addresses it names and gives it back (REPEAT) at once, to go on past the
//!                 first rule; its flow's verdict is not touched
//! NWFILTER-ALLOW  save the mark to the connection, clear it from the packet
//! NWFILTER-PEEK   save the PEEK bits to the connection (its next packets are queued), and
//!                 IN when the packet has it (a SYN whose flow is peeked at both ways: BOTH
//!                 = PEEK|IN, and the peer's packets are queued too), clear the packet's mark;
//!                 the packet goes on
//! NWFILTER-DROP   clear the mark; REJECT: TCP with a reset, so the program's connect fails
//!                 at once ("connection refused") instead of retrying for minutes; UDP with
//!                 icmp(6) administratively prohibited. Not ICMP for TCP: the kernel sends at
//!                 most 1000 ICMP errors a second (net.ipv4.icmp_msgs_per_sec, burst 50), and
//!                 measured here, 2 % of 2,000 dropped connects in a burst lost their answer
//!                 and waited for the SYN's retransmission, a second or more.
//! ```
//!
//! With local network privacy alone (no rules, no provider), only flows to the local network
//! are queued: the two NFQUEUE rules move to `NWFILTER-QUEUE`, which `NWFILTER` enters for
//! multicast and broadcast destinations, link-local ones and each on-link prefix (rewritten
//! when the routes change). Every other flow never leaves the kernel.
//!
//! Loopback is not filtered. The mark bits are chosen clear of nw-tunnel's table marks
//! (`0x6e77xxxx`), so a tunnel's bypass sockets keep their routing.

use std::io;

/// The bits of the packet and connection marks the filter uses.
pub(crate) const MARK_MASK: u32 = 0x9100_0000;
/// The mark of an allowed flow.
pub(crate) const MARK_ALLOW: u32 = 0x8000_0000;
/// The mark of a dropped flow's packet.
pub(crate) const MARK_DROP: u32 = 0x0100_0000;
/// The mark of a peeked flow, and of a packet of it that passes. As a packet mark, any
/// value with both its bits.
pub(crate) const MARK_PEEK: u32 = MARK_ALLOW | MARK_DROP;
/// The bit that, with [`MARK_PEEK`], says the peer's packets of a peeked flow are queued too
/// (the provider peeks at its bytes). Set on the connection by the SYN's verdict; a packet
/// that passes later carries [`MARK_PEEK`] alone and leaves the bit as it is.
pub(crate) const MARK_PEEK_IN: u32 = 0x1000_0000;
/// The mark of a flow whose bytes are peeked at both ways.
pub(crate) const MARK_PEEK_BOTH: u32 = MARK_PEEK | MARK_PEEK_IN;
/// The packet mark of a DNS answer queued for the names it gives (never a connection's).
pub(crate) const MARK_DNS: u32 = 0x0080_0000;

/// The chain the filter's rules live in.
pub(crate) const CHAIN: &str = "NWFILTER";
const ALLOW_CHAIN: &str = "NWFILTER-ALLOW";
const DROP_CHAIN: &str = "NWFILTER-DROP";
const QUEUE_CHAIN: &str = "NWFILTER-QUEUE";
const PEEK_CHAIN: &str = "NWFILTER-PEEK";
/// The chain INPUT jumps to: new inbound flows.
const IN_CHAIN: &str = "NWFILTER-IN";
/// The chain DNS answers are queued from.
const DNS_CHAIN: &str = "NWFILTER-DNS";
/// Every chain of ours.
const CHAINS: [&str; 7] =
    [CHAIN, ALLOW_CHAIN, DROP_CHAIN, QUEUE_CHAIN, PEEK_CHAIN, IN_CHAIN, DNS_CHAIN];

/// The iptables programs, one per family.
pub(crate) const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

/// Which new flows are queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every new flow.
    All,
    /// Flows to the local network: multicast, broadcast, link-local and these on-link
    /// prefixes (both families; each rule goes to its family's tool).
    Local(Vec<String>),
}

/// The `iptables-restore --noflush` input that installs the rules for one family; without
/// `jump`, it rewrites the chains in place (one transaction) and leaves OUTPUT alone.
pub(crate) fn restore_input(
    ipv6: bool,
    queue: u16,
    bypass: bool,
    pid: u32,
    scope: &Scope,
    jump: bool,
) -> String {
    let mask = format!("{MARK_MASK:#x}");
    let allow = format!("{MARK_ALLOW:#x}/{mask}");
    let drop = format!("{MARK_DROP:#x}/{mask}");
    let clear = format!("{:#x}", !MARK_MASK);
    let bypass = if bypass { " --queue-bypass" } else { "" };
    let reject = if ipv6 { "icmp6-adm-prohibited" } else { "icmp-admin-prohibited" };
    // Peeked: both peek bits (whatever the inbound bit); peeked both ways: all three.
    let peek = format!("{MARK_PEEK:#x}/{MARK_PEEK:#x}");
    let both = format!("{MARK_PEEK_BOTH:#x}/{MARK_PEEK_BOTH:#x}");
    let mut s = String::from("*filter\n");
    for c in CHAINS {
        s += &format!(":{c} - [0:0]\n");
    }
    if jump {
        s += &format!(
            "-I OUTPUT 1 ! -o lo -m comment --comment \"nwkit filter (pid {pid})\" -j {CHAIN}\n"
        );
        s += &format!(
            "-I INPUT 1 ! -i lo -m comment --comment \"nwkit filter (pid {pid})\" -j {IN_CHAIN}\n"
        );
    }
    // A chain's first rules: a packet given a verdict comes back (REPEAT) and is marked so,
    // and the rest of an allowed flow returns at once.
    let verdicts = |chain: &str| {
        format!(
            "-A {chain} -m mark --mark {allow} -j {ALLOW_CHAIN}\n\
             -A {chain} -m connmark --mark {allow} -j RETURN\n\
             -A {chain} -m mark --mark {drop} -j {DROP_CHAIN}\n"
        )
    };
    // A peeked flow's packets: those of the flows whose connection mark matches `queued`
    // are queued (a packet given "pass" must not be queued again, and the SYN of a flow to
    // peek at must not be taken for a new flow's); a passed one goes on, as does the rest.
    let peeks = |chain: &str, queued: &str| {
        format!(
            "-A {chain} -m mark ! --mark {peek} -m connmark --mark {queued} -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num {queue}{bypass}\n\
             -A {chain} -m mark --mark {peek} -j {PEEK_CHAIN}\n\
             -A {chain} -m connmark --mark {peek} -j RETURN\n"
        )
    };
    s += &verdicts(CHAIN);
    // TCP: only a SYN starts a flow. Without `--syn`, the first packets conntrack sees of a
    // connection made before the filter started (it picks them up mid-stream as NEW) would be
    // queued, find no socket to attribute, and be refused.
    let queued = match scope {
        Scope::All => {
            s += &peeks(CHAIN, &peek);
            CHAIN
        }
        Scope::Local(prefixes) => {
            s += &format!("-A {CHAIN} -m addrtype --dst-type MULTICAST -j {QUEUE_CHAIN}\n");
            let link_local = if ipv6 {
                "fe80::/10"
            } else {
                s += &format!("-A {CHAIN} -m addrtype --dst-type BROADCAST -j {QUEUE_CHAIN}\n");
                "169.254.0.0/16"
            };
            s += &format!("-A {CHAIN} -d {link_local} -j {QUEUE_CHAIN}\n");
            for p in prefixes.iter().filter(|p| p.contains(':') == ipv6) {
                s += &format!("-A {CHAIN} -d {p} -j {QUEUE_CHAIN}\n");
            }
            QUEUE_CHAIN
        }
    };
    // Inbound flows: a connection to a server here, a datagram to a bound socket. Their
    // replies go out through OUTPUT as the flow's (connmark), and are never queued.
    let mut queue_from = vec![queued];
    if *scope == Scope::All {
        // DNS answers first (an allowed flow's packets return at the next rules): the names
        // of the addresses this host's programs will connect to.
        let dns = format!("{MARK_DNS:#x}/{MARK_DNS:#x}");
        s += &format!(
            "-A {IN_CHAIN} -p udp --sport 53 -m conntrack --ctstate ESTABLISHED -m mark ! --mark {dns} -j {DNS_CHAIN}\n"
        );
        // Over TCP (a truncated answer asked again, RFC 7766): the segments of an allowed
        // connection only, which the next rules then let through (a connection whose bytes
        // a provider peeks at has its packets queued for that, and is not read for names).
        s += &format!(
            "-A {IN_CHAIN} -p tcp --sport 53 -m conntrack --ctstate ESTABLISHED -m connmark --mark {allow} -m mark ! --mark {dns} -j {DNS_CHAIN}\n"
        );
        s += &format!("-A {DNS_CHAIN} -j MARK --or-mark {MARK_DNS:#x}\n");
        s += &format!("-A {DNS_CHAIN} -j NFQUEUE --queue-num {queue} --queue-bypass\n");
        s += &verdicts(IN_CHAIN);
        // The peer's packets are queued only for flows peeked at both ways.
        s += &peeks(IN_CHAIN, &both);
        queue_from.push(IN_CHAIN);
    }
    for chain in queue_from {
        for p in ["tcp --syn", "udp"] {
            s += &format!(
                "-A {chain} -p {p} -m conntrack --ctstate NEW -j NFQUEUE --queue-num {queue}{bypass}\n"
            );
        }
    }
    s += &format!("-A {ALLOW_CHAIN} -j CONNMARK --save-mark --nfmask {mask} --ctmask {mask}\n");
    s += &format!("-A {ALLOW_CHAIN} -j MARK --and-mark {clear}\n");
    // The peek bits only: a packet that passes keeps the connection's inbound bit, which
    // the SYN's verdict alone sets.
    s += &format!(
        "-A {PEEK_CHAIN} -j CONNMARK --save-mark --nfmask {MARK_PEEK:#x} --ctmask {MARK_PEEK:#x}\n"
    );
    s += &format!(
        "-A {PEEK_CHAIN} -m mark --mark {MARK_PEEK_IN:#x}/{MARK_PEEK_IN:#x} -j CONNMARK --or-mark {MARK_PEEK_IN:#x}\n"
    );
    s += &format!("-A {PEEK_CHAIN} -j MARK --and-mark {clear}\n");
    s += &format!("-A {DROP_CHAIN} -j MARK --and-mark {clear}\n");
    s += &format!("-A {DROP_CHAIN} -p tcp -j REJECT --reject-with tcp-reset\n");
    s += &format!("-A {DROP_CHAIN} -j REJECT --reject-with {reject}\n");
    s += "COMMIT\n";
    s
}

/// Runs iptables (or ip6tables, or either's `-restore`).
fn run(tool: &str, args: &[&str], input: Option<&str>) -> io::Result<String> {
    nw_provider::tool(tool, args, input, "iptables")
}

/// Whether the filter's chain exists (a host runs, or one was killed and left it), and the
/// pid named in its OUTPUT rule.
pub(crate) fn existing() -> Option<Option<u32>> {
    let rules = run("iptables", &["-w", "-S", "OUTPUT"], None).ok()?;
    let chains = run("iptables", &["-w", "-S"], None).ok()?;
    if !chains.lines().any(|l| l == format!("-N {CHAIN}")) {
        return None;
    }
    let pid = rules.lines().find(|l| l.ends_with(&format!("-j {CHAIN}"))).and_then(|l| {
        let at = l.find("(pid ")? + 5;
        l[at..].split(')').next()?.parse().ok()
    });
    Some(pid)
}

/// Whether the filter's rules queue only flows to the local network (rules jump to
/// `NWFILTER-QUEUE`: local network privacy alone), rather than every new flow.
pub(crate) fn local_only() -> bool {
    run("iptables", &["-w", "-S"], None).is_ok_and(|rules| sends_to_queue_chain(&rules))
}

/// Whether rules (as `iptables -S` lists them) send anything to the local-only queue chain.
/// The chain itself is made in both scopes; only with local network privacy alone do rules
/// jump to it.
fn sends_to_queue_chain(rules: &str) -> bool {
    rules.lines().any(|l| l.starts_with("-A ") && l.ends_with(&format!(" -j {QUEUE_CHAIN}")))
}

/// Installs the rules for both families; on failure removes what was installed.
pub(crate) fn install(queue: u16, bypass: bool, pid: u32, scope: &Scope) -> io::Result<()> {
    for (i, tool) in TOOLS.iter().enumerate() {
        let input = restore_input(i == 1, queue, bypass, pid, scope, true);
        if let Err(e) = run(&format!("{tool}-restore"), &["-w", "--noflush"], Some(&input)) {
            remove();
            return Err(e);
        }
    }
    Ok(())
}

/// Rewrites the chains for a new scope (the on-link prefixes changed), each family in one
/// transaction: no moment without the rules.
pub(crate) fn rescope(queue: u16, bypass: bool, scope: &Scope) -> io::Result<()> {
    for (i, tool) in TOOLS.iter().enumerate() {
        let input = restore_input(i == 1, queue, bypass, 0, scope, false);
        run(&format!("{tool}-restore"), &["-w", "--noflush"], Some(&input))?;
    }
    Ok(())
}

/// Removes the rules of both families, whoever installed them; returns what could not be
/// removed. A round that leaves something (a chain the kernel still calls busy, a listing
/// that failed) is followed by another, up to three, 100 ms apart: what is reported is what
/// the last one could not remove.
#[allow(clippy::disallowed_methods, reason = "sys code: a short pause between removal rounds")]
pub(crate) fn remove() -> Vec<String> {
    let mut left = remove_once();
    for _ in 1..3 {
        if left.is_empty() {
            break;
        }
        tracing::debug!("removing the filter's rules left {left:?}; once more");
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = remove_once();
    }
    left
}

fn remove_once() -> Vec<String> {
    let mut left = Vec::new();
    for tool in TOOLS {
        for (builtin, ours) in [("OUTPUT", CHAIN), ("INPUT", IN_CHAIN)] {
            // Rule numbers of the jumps, highest first so that deleting keeps the others'
            // numbers.
            let listed = match run(tool, &["-w", "-n", "--line-numbers", "-L", builtin], None) {
                Ok(listed) => listed,
                Err(e) => {
                    left.push(format!("cannot list {builtin} to find our jumps: {e}"));
                    continue;
                }
            };
            let mut numbers: Vec<u32> = listed
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(ours))
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            numbers.sort_unstable_by(|a, b| b.cmp(a));
            for n in numbers {
                if let Err(e) = run(tool, &["-w", "-D", builtin, &n.to_string()], None) {
                    left.push(e.to_string());
                }
            }
        }
        // Every chain flushed before any is deleted: ours jump to each other.
        let existing: Vec<&str> = CHAINS
            .into_iter()
            .filter(|chain| run(tool, &["-w", "-n", "-L", chain], None).is_ok())
            .collect();
        for op in ["-F", "-X"] {
            for chain in &existing {
                if let Err(e) = run(tool, &["-w", op, chain], None) {
                    left.push(e.to_string());
                }
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_of_installed_rules_is_read_back() {
        // The installed rules as `iptables -S` lists them are the restore input's `-A` lines.
        let listed = |scope: &Scope| restore_input(false, 7, true, 1, scope, true);
        assert!(!sends_to_queue_chain(&listed(&Scope::All)), "every flow is queued");
        assert!(sends_to_queue_chain(&listed(&Scope::Local(vec!["10.0.0.0/24".into()]))));
    }

    #[test]
    fn rules_queue_only_new_flows_and_keep_clear_of_tunnel_marks() {
        let v4 = restore_input(false, 7, true, 42, &Scope::All, true);
        assert!(v4.contains(
            "-I OUTPUT 1 ! -o lo -m comment --comment \"nwkit filter (pid 42)\" -j NWFILTER\n"
        ));
        assert!(v4.contains(
            "-p tcp --syn -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7 --queue-bypass\n"
        ));
        assert!(v4.contains("--reject-with icmp-admin-prohibited"));
        let v6 = restore_input(true, 7, false, 42, &Scope::All, true);
        assert!(v6.contains("--reject-with icmp6-adm-prohibited"));
        // Fail-closed: no flow's packet bypasses a queue nobody reads (DNS answers aside).
        assert!(!v6.lines().any(|l| l.contains("bypass") && !l.starts_with("-A NWFILTER-DNS ")));
        // The allow chain is entered before the connmark RETURN, so a repeated packet's mark is
        // saved before the rule that lets the rest of its flow through.
        let a = v4.find("-j NWFILTER-ALLOW").unwrap_or(usize::MAX);
        let r = v4.find("-j RETURN").unwrap_or(0);
        assert!(a < r);
        // A passed packet of a peeked flow goes out before the rule that queues the flow's
        // packets.
        let peeked = v4
            .find(
                "-m connmark --mark 0x81000000/0x81000000 -m conntrack ! --ctstate NEW -j NFQUEUE",
            )
            .unwrap_or(usize::MAX);
        let passed = v4.find("--mark 0x81000000/0x81000000 -j NWFILTER-PEEK").unwrap_or(0);
        let on = v4.find("-m connmark --mark 0x81000000/0x81000000 -j RETURN").unwrap_or(0);
        let syn = v4.find("-p tcp --syn").unwrap_or(0);
        assert!(peeked < passed && passed < on && on < syn, "{v4}");
        assert!(v4.contains("-m mark ! --mark 0x81000000/0x81000000 -m connmark"), "{v4}");
        // Inbound: INPUT jumps to the inbound chain, which queues new flows after the marks.
        assert!(v4.contains(
            "-I INPUT 1 ! -i lo -m comment --comment \"nwkit filter (pid 42)\" -j NWFILTER-IN\n"
        ));
        let inbound: Vec<&str> = v4.lines().filter(|l| l.starts_with("-A NWFILTER-IN ")).collect();
        assert_eq!(inbound.len(), 10, "{v4}");
        // DNS answers are read first, once (the mark the DNS chain sets keeps them from it the
        // second time); queued with bypass, so DNS never waits on a host that is gone.
        assert!(inbound[0].ends_with(
            "-p udp --sport 53 -m conntrack --ctstate ESTABLISHED -m mark ! --mark 0x800000/0x800000 -j NWFILTER-DNS"
        ), "{v4}");
        assert!(v4.contains(
            "-A NWFILTER-DNS -j MARK --or-mark 0x800000\n-A NWFILTER-DNS -j NFQUEUE --queue-num 7 --queue-bypass\n"
        ), "{v4}");
        // Over TCP, an allowed connection's segments only.
        assert!(inbound[1].ends_with(
            "-p tcp --sport 53 -m conntrack --ctstate ESTABLISHED -m connmark --mark 0x80000000/0x91000000 -m mark ! --mark 0x800000/0x800000 -j NWFILTER-DNS"
        ), "{v4}");
        let v6_bare = restore_input(true, 7, false, 42, &Scope::All, true);
        assert!(v6_bare.contains("-A NWFILTER-DNS -j NFQUEUE --queue-num 7 --queue-bypass\n"));
        let inbound = &inbound[2..];
        assert!(
            inbound[0].ends_with("-j NWFILTER-ALLOW") && inbound[2].ends_with("-j NWFILTER-DROP")
        );
        // The peer's packets are queued only for flows peeked at both ways.
        assert!(
            inbound[3].contains(
                "-m mark ! --mark 0x81000000/0x81000000 -m connmark --mark 0x91000000/0x91000000 -m conntrack ! --ctstate NEW -j NFQUEUE"
            ),
            "{v4}"
        );
        assert!(inbound[4].ends_with("-m mark --mark 0x81000000/0x81000000 -j NWFILTER-PEEK"));
        assert!(inbound[6].contains("-p tcp --syn -m conntrack --ctstate NEW -j NFQUEUE"));
        // A passed packet saves the peek bits and leaves the inbound bit to the SYN's verdict.
        assert!(v4.contains(
            "-A NWFILTER-PEEK -j CONNMARK --save-mark --nfmask 0x81000000 --ctmask 0x81000000\n-A NWFILTER-PEEK -m mark --mark 0x10000000/0x10000000 -j CONNMARK --or-mark 0x10000000\n"
        ), "{v4}");
        // An allowed flow's mark replaces all three bits.
        assert!(v4.contains(
            "-A NWFILTER-ALLOW -j CONNMARK --save-mark --nfmask 0x91000000 --ctmask 0x91000000"
        ));
        // nw-tunnel marks sockets with 0x6e770000 + ifindex; those bits never hit our mask.
        assert_eq!(0x6e77_ffff & (MARK_MASK | MARK_DNS), 0);
        assert_eq!(MARK_DNS & MARK_MASK, 0);
    }

    #[test]
    fn local_network_privacy_alone_queues_only_local_destinations() {
        let scope = Scope::Local(vec!["198.51.100.0/24".into(), "2001:db8:1::/64".into()]);
        let v4 = restore_input(false, 7, true, 42, &scope, true);
        let v6 = restore_input(true, 7, true, 42, &scope, false);
        for (text, family) in [(&v4, "v4"), (&v6, "v6")] {
            // The queue rules are only in the local chain.
            let queue: Vec<&str> = text.lines().filter(|l| l.contains("NFQUEUE")).collect();
            assert_eq!(queue.len(), 2, "{family}: {text}");
            assert!(queue.iter().all(|l| l.starts_with("-A NWFILTER-QUEUE ")), "{family}: {text}");
            assert!(text.contains("-m addrtype --dst-type MULTICAST -j NWFILTER-QUEUE"), "{text}");
        }
        assert!(v4.contains("-A NWFILTER -d 198.51.100.0/24 -j NWFILTER-QUEUE\n"));
        assert!(v4.contains("-A NWFILTER -d 169.254.0.0/16 -j NWFILTER-QUEUE\n"));
        assert!(v4.contains("--dst-type BROADCAST"));
        assert!(!v4.contains("2001:db8"));
        assert!(v6.contains("-A NWFILTER -d 2001:db8:1::/64 -j NWFILTER-QUEUE\n"));
        assert!(v6.contains("-A NWFILTER -d fe80::/10 -j NWFILTER-QUEUE\n"));
        // Inbound flows are not queued for local network privacy alone, nor DNS answers.
        assert!(!v4.contains("-A NWFILTER-IN ") && !v4.contains("-A NWFILTER-DNS "), "{v4}");
        assert!(!v6.contains("198.51") && !v6.contains("BROADCAST"));
        // Rewriting in place leaves OUTPUT's jump alone.
        assert!(v4.contains("-I OUTPUT") && !v6.contains("-I OUTPUT"));
    }
}
