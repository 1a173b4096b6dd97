//! Destination address selection, RFC 6724 §6, as a pure sort.
//!
//! The caller supplies, for each destination, the source address the system would use (or
//! none when the destination is unreachable), typically from a routing lookup. Rules 3
//! (deprecated sources) and the native-transport rule 7 use what the caller knows; rule 4
//! (home addresses) does not apply to Linux hosts without Mobile IPv6 and is skipped.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};

/// One destination and the source address chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub destination: IpAddr,
    /// `None`: no route, the destination is unusable (rule 1).
    pub source: Option<IpAddr>,
    /// The source address is deprecated (rule 3).
    pub source_deprecated: bool,
}

impl Candidate {
    pub(crate) fn new(destination: IpAddr, source: Option<IpAddr>) -> Self {
        Self { destination, source, source_deprecated: false }
    }
}

/// Sorts destinations by RFC 6724 §6. Stable: rule 10 keeps the original order of ties.
pub(crate) fn sort(candidates: &mut [Candidate]) {
    candidates.sort_by(compare);
}

/// RFC 6724 §6: `Less` means `a` is preferred.
pub(crate) fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    let (da, db) = (mapped(a.destination), mapped(b.destination));
    // Rule 1: avoid unusable destinations.
    let (Some(sa), Some(sb)) = (a.source.map(mapped), b.source.map(mapped)) else {
        return b.source.is_some().cmp(&a.source.is_some()).then(Ordering::Equal);
    };
    prefer(scope(da) == scope(sa), scope(db) == scope(sb)) // Rule 2: matching scope.
        .then_with(|| prefer(!a.source_deprecated, !b.source_deprecated)) // Rule 3.
        .then_with(|| prefer(label(da) == label(sa), label(db) == label(sb))) // Rule 5.
        .then_with(|| precedence(db).cmp(&precedence(da))) // Rule 6: higher precedence first.
        .then_with(|| scope(da).cmp(&scope(db))) // Rule 8: smaller scope first.
        .then_with(|| {
            // Rule 9: longest matching prefix — for IPv6 only: applied to IPv4 it would defeat
            // DNS round-robin among addresses in the client's own /8, /16, …
            if a.destination.is_ipv6() && b.destination.is_ipv6() {
                common_prefix(db, sb).cmp(&common_prefix(da, sa))
            } else {
                Ordering::Equal
            }
        })
}

fn prefer(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// IPv4 addresses are compared as IPv4-mapped IPv6 addresses (RFC 6724 §3.3).
fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// RFC 6724 §2.1 default policy table: (prefix, length, precedence, label).
const POLICY: [(u128, u8, u8, u8); 9] = [
    (0x0000_0000_0000_0000_0000_0000_0000_0001, 128, 50, 0), // ::1/128
    (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96, 35, 4),  // ::ffff:0:0/96
    (0x0000_0000_0000_0000_0000_0000_0000_0000, 96, 1, 3),   // ::/96
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, 5, 5),   // 2001::/32
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16, 30, 2),  // 2002::/16
    (0x3ffe_0000_0000_0000_0000_0000_0000_0000, 16, 1, 12),  // 3ffe::/16
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, 1, 11),  // fec0::/10
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, 3, 13),   // fc00::/7
    (0x0000_0000_0000_0000_0000_0000_0000_0000, 0, 40, 1),   // ::/0
];

/// The longest matching policy entry (the table is ordered longest prefix first).
fn policy(ip: Ipv6Addr) -> (u8, u8) {
    let bits = u128::from(ip);
    POLICY
        .iter()
        .find(|(prefix, len, ..)| *len == 0 || (bits ^ prefix) >> (128 - u32::from(*len)) == 0)
        .map_or((40, 1), |(_, _, precedence, label)| (*precedence, *label))
}

fn precedence(ip: Ipv6Addr) -> u8 {
    policy(ip).0
}

fn label(ip: Ipv6Addr) -> u8 {
    policy(ip).1
}

/// Scope values of RFC 4291 §2.7 (multicast) and RFC 6724 §3.1–3.2 (unicast, IPv4).
fn scope(ip: Ipv6Addr) -> u8 {
    if let Some(v4) = ip.to_ipv4_mapped() {
        // RFC 6724 §3.2: loopback and link-local IPv4 are link-local scope; the rest global.
        return if v4.is_loopback() || v4.is_link_local() { 0x2 } else { 0xe };
    }
    let s = ip.segments();
    if s[0] >> 8 == 0xff {
        return u8::try_from(s[0] & 0xf).unwrap_or(0xe); // multicast: the scope nibble
    }
    if ip.is_loopback() || s[0] & 0xffc0 == 0xfe80 {
        0x2 // ::1 and fe80::/10 are link-local scope (RFC 6724 §3.1, RFC 4007)
    } else if s[0] & 0xffc0 == 0xfec0 {
        0x5 // deprecated site-local
    } else {
        0xe
    }
}

/// Bits in common, up to the 64-bit prefix length (RFC 6724 §2.2 CommonPrefixLen).
fn common_prefix(a: Ipv6Addr, b: Ipv6Addr) -> u32 {
    let diff = (u128::from(a) ^ u128::from(b)) >> 64;
    u64::try_from(diff).map_or(0, |d| d.leading_zeros()).min(64)
}

#[cfg(test)]
mod tests;
