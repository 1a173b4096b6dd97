//! The kill switch (Apple's `includeAllNetworks`, with `excludeLocalNetworks`): an nftables
//! table of the tunnel's own that lets out only what goes into the tunnel, and rejects the rest
//! at once (a reset for TCP, "administratively prohibited" otherwise), so a program fails fast
//! instead of waiting on packets that never leave.
//!
//! ```text
//! table inet nwkit_tunnel_IFNAME            one per tunnel, named by its interface
//!   output (and forward), priority filter:
//!     oifname "lo" accept                   comment "nwkit tunnel kill switch (pid N)"
//!     oifname "IFNAME" accept               into the tunnel
//!     meta mark TABLE accept                the provider's bypass sockets
//!     ip(6) daddr @remote accept            the tunnel's remote address
//!     ICMPv6 router and neighbour discovery (hop limit 255), so the provider's own IPv6
//!       traffic can find its router
//!     ip(6) daddr @local accept             with excludeLocalNetworks only
//!     reject
//! ```
//!
//! The table is fail-closed by construction: it names the interface, not the host, so when the
//! host is killed and its TUN device goes with it, nothing matches "into the tunnel" any more
//! and everything but loopback is rejected until `nw tunnel down` (or a new host with a kill
//! switch) removes it. Each change replaces the table in one nft transaction: there is no
//! moment without it.
//!
//! Accepting in our chain does not override another table's drop (every base chain on a hook
//! must accept), so we add protection and never take any away.

use std::io;
use std::net::IpAddr;

use crate::settings::Prefix;

/// The prefix of our tables' names; the interface's name follows.
pub(crate) const TABLE_PREFIX: &str = "nwkit_tunnel_";
/// What the first rule's comment starts with; `(pid N)` follows.
const COMMENT: &str = "nwkit tunnel kill switch";

/// What one tunnel's kill switch lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The TUN interface's name.
    pub(crate) interface: String,
    /// The mark of the provider's bypass sockets.
    pub(crate) mark: u32,
    /// The host's process id, written in a comment so a leftover table names its host.
    pub(crate) pid: u32,
    /// The tunnel's remote addresses.
    pub(crate) remotes: Vec<IpAddr>,
    /// The local network (`crate::settings::local_network`), let through directly
    /// (`excludeLocalNetworks`); `None` when local traffic must go through the tunnel too.
    pub(crate) local: Option<Vec<Prefix>>,
}

/// The table's name for an interface.
pub(crate) fn table_name(interface: &str) -> String {
    // Interface names may hold characters nft identifiers may not (`-`, `.`, `@`...).
    let safe: String = interface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    format!("{TABLE_PREFIX}{safe}")
}

/// The `nft -f` input that creates (or atomically replaces) the table.
pub(crate) fn ruleset(spec: &Spec) -> String {
    let name = table_name(&spec.interface);
    let remote4 = elements(spec.remotes.iter().filter(|a| a.is_ipv4()).map(IpAddr::to_string));
    let remote6 = elements(spec.remotes.iter().filter(|a| a.is_ipv6()).map(IpAddr::to_string));
    let mut s = String::new();
    // Creating then deleting makes the delete succeed whether or not the table exists; the
    // three lines are one transaction.
    s += &format!("table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n");
    s += &format!("  set remote4 {{ type ipv4_addr;{remote4} }}\n");
    s += &format!("  set remote6 {{ type ipv6_addr;{remote6} }}\n");
    if let Some(local) = &spec.local {
        let all: Vec<String> = local.iter().map(Prefix::to_string).collect();
        // auto-merge: on-link prefixes may overlap the always-local ones or each other.
        let v4 = elements(all.iter().filter(|p| !p.contains(':')).cloned());
        let v6 = elements(all.iter().filter(|p| p.contains(':')).cloned());
        s += &format!("  set local4 {{ type ipv4_addr; flags interval; auto-merge;{v4} }}\n");
        s += &format!("  set local6 {{ type ipv6_addr; flags interval; auto-merge;{v6} }}\n");
    }
    for (chain, hook) in [("output", "output"), ("forward", "forward")] {
        s += &format!(
            "  chain {chain} {{\n    type filter hook {hook} priority filter; policy accept;\n"
        );
        if hook == "output" {
            s += &format!("    oifname \"lo\" accept comment \"{COMMENT} (pid {})\"\n", spec.pid);
        }
        s += &format!("    oifname \"{}\" accept\n", spec.interface);
        if hook == "output" {
            s += &format!("    meta mark {:#x} accept\n", spec.mark);
            s += "    ip daddr @remote4 accept\n    ip6 daddr @remote6 accept\n";
            s += "    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept\n";
        }
        if spec.local.is_some() {
            s += "    ip daddr @local4 accept\n    ip6 daddr @local6 accept\n";
        }
        s += "    meta l4proto tcp reject with tcp reset\n    reject with icmpx admin-prohibited\n  }\n";
    }
    s += "}\n";
    s
}

/// ` elements = { A, B };`, or nothing for an empty set.
fn elements(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", items.join(", "))
    }
}

fn nft(args: &[&str], input: Option<&str>) -> io::Result<String> {
    nw_provider::tool("nft", args, input, "nftables")
}

/// Installs the kill switch, or replaces the one in force, in one transaction.
pub(crate) fn install(spec: &Spec) -> io::Result<()> {
    nft(&["-f", "-"], Some(&ruleset(spec))).map(drop)
}

/// Removes a tunnel's kill switch (by its interface's name); absent is not an error.
pub(crate) fn remove(interface: &str) -> io::Result<()> {
    remove_table(&table_name(interface))
}

/// Removes a kill switch table by its name, as listed; absent is not an error.
pub(crate) fn remove_table(name: &str) -> io::Result<()> {
    if !name.starts_with(TABLE_PREFIX) {
        return Err(io::Error::other(format!("{name} is not a tunnel's kill switch")));
    }
    nft(&["-f", "-"], Some(&format!("table inet {name}\ndelete table inet {name}\n"))).map(drop)
}

/// A kill switch table in this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    /// The table's name.
    pub(crate) table: String,
    /// The interface it lets traffic into.
    pub(crate) interface: String,
    /// The host that installed it, from its comment.
    pub(crate) pid: Option<u32>,
}

/// Every kill switch table in this network namespace.
pub(crate) fn installed() -> io::Result<Vec<Installed>> {
    let tables = nft(&["list", "tables", "inet"], None)?;
    let mut out = Vec::new();
    for line in tables.lines() {
        let Some(table) = line.trim().strip_prefix("table inet ") else { continue };
        if !table.starts_with(TABLE_PREFIX) {
            continue;
        }
        let text = nft(&["list", "table", "inet", table], None).unwrap_or_default();
        out.push(parse(table, &text));
    }
    Ok(out)
}

/// What a listed table says about itself.
fn parse(table: &str, text: &str) -> Installed {
    let pid = text.find(&format!("{COMMENT} (pid ")).and_then(|at| {
        let rest = &text[at + COMMENT.len() + " (pid ".len()..];
        rest.split(')').next()?.parse().ok()
    });
    // The second rule of the output chain names the interface: `oifname "IFNAME" accept`.
    let interface = text
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("oifname \"")?.split('"').next())
        .find(|name| *name != "lo")
        .unwrap_or_default()
        .to_owned();
    Installed { table: table.to_owned(), interface, pid }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(local: Option<Vec<Prefix>>) -> Spec {
        Spec {
            interface: "nwtun0".into(),
            mark: 0x6e77_0005,
            pid: 42,
            remotes: vec!["198.51.100.2".parse().unwrap_or_else(|e| panic!("{e}"))],
            local,
        }
    }

    #[test]
    fn the_kill_switch_lets_out_only_the_tunnel_its_provider_and_its_server() {
        let text = ruleset(&spec(None));
        assert!(text.starts_with(
            "table inet nwkit_tunnel_nwtun0\ndelete table inet nwkit_tunnel_nwtun0\n"
        ));
        assert!(text.contains("elements = { 198.51.100.2 }"), "{text}");
        assert!(text.contains("set remote6 { type ipv6_addr; }"), "{text}");
        assert!(text.contains("meta mark 0x6e770005 accept"), "{text}");
        assert!(text.contains("comment \"nwkit tunnel kill switch (pid 42)\""), "{text}");
        assert!(!text.contains("@local"), "without excludeLocalNetworks: {text}");
        // Both chains end in a reject, so nothing falls through to the policy.
        assert_eq!(text.matches("reject with icmpx admin-prohibited\n  }").count(), 2, "{text}");
        // Forwarded traffic gets no pass for the provider's mark or the server.
        let forward = &text[text.find("chain forward").unwrap_or(0)..];
        assert!(!forward.contains("meta mark") && !forward.contains("@remote"), "{forward}");
    }

    #[test]
    fn excluding_the_local_network_lets_its_prefixes_out_directly() {
        let on_link = ["192.168.1.0/24".parse().unwrap_or_else(|e| panic!("{e:?}"))];
        let text = ruleset(&spec(Some(crate::settings::local_network(&on_link))));
        assert!(text.contains("169.254.0.0/16, 224.0.0.0/4, 255.255.255.255/32, 192.168.1.0/24"));
        assert!(text.contains("elements = { fe80::/10, ff00::/8 }"), "{text}");
        assert_eq!(text.matches("ip daddr @local4 accept").count(), 2, "{text}");
    }

    #[test]
    fn table_names_are_nft_identifiers_and_a_listing_names_its_host() {
        assert_eq!(table_name("wg-home.1"), "nwkit_tunnel_wg_home_1");
        let listed = "table inet nwkit_tunnel_nwtun0 {\n\tchain output {\n\t\toifname \"lo\" accept comment \"nwkit tunnel kill switch (pid 77)\"\n\t\toifname \"nwtun0\" accept\n";
        assert_eq!(
            parse("nwkit_tunnel_nwtun0", listed),
            Installed {
                table: "nwkit_tunnel_nwtun0".into(),
                interface: "nwtun0".into(),
                pid: Some(77)
            }
        );
    }
}
