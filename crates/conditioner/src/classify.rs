//! What kind of packet: enough IP to tell DNS (UDP or TCP, port 53, either direction) from the
//! rest. Anything unreadable is "not DNS".

/// Whether an IPv4 or IPv6 packet is DNS.
pub fn is_dns(packet: &[u8]) -> bool {
    let Some(&first) = packet.first() else { return false };
    let (protocol, rest) = match first >> 4 {
        4 => {
            let header = usize::from(first & 0x0f) * 4;
            // A fragment other than the first carries no ports.
            let fragment_offset = packet.get(6..8).map(|b| u16::from_be_bytes([b[0] & 0x1f, b[1]]));
            if header < 20 || fragment_offset != Some(0) {
                return false;
            }
            match (packet.get(9), packet.get(header..)) {
                (Some(p), Some(rest)) => (*p, rest),
                _ => return false,
            }
        }
        // No extension headers are followed: DNS does not use them.
        6 => match (packet.get(6), packet.get(40..)) {
            (Some(p), Some(rest)) => (*p, rest),
            _ => return false,
        },
        _ => return false,
    };
    if protocol != 6 && protocol != 17 {
        return false;
    }
    let port = |at: usize| rest.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    port(0) == Some(53) || port(2) == Some(53)
}

#[cfg(test)]
mod tests {
    use super::is_dns;

    fn ipv4(protocol: u8, src: u16, dst: u16) -> Vec<u8> {
        let mut p =
            vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    fn ipv6(next: u8, src: u16, dst: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, next, 64];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    #[test]
    fn dns_both_ways_over_udp_and_tcp_and_nothing_else() {
        assert!(is_dns(&ipv4(17, 40000, 53)));
        assert!(is_dns(&ipv4(17, 53, 40000)));
        assert!(is_dns(&ipv4(6, 40000, 53)));
        assert!(is_dns(&ipv6(17, 40000, 53)));
        assert!(!is_dns(&ipv4(17, 40000, 443)));
        assert!(!is_dns(&ipv4(1, 53, 53)), "ICMP has no ports");
        assert!(!is_dns(&ipv6(58, 53, 53)));
        let mut fragment = ipv4(17, 40000, 53);
        fragment[7] = 8; // offset 64 bytes
        assert!(!is_dns(&fragment));
    }

    #[test]
    fn truncated_or_garbage_input_is_not_dns_and_never_panics() {
        let whole = ipv4(17, 40000, 53);
        // Without both ports there is nothing to tell; with them, the payload does not matter.
        for cut in 0..whole.len() {
            assert_eq!(is_dns(&whole[..cut]), cut >= 24, "cut at {cut}");
        }
        for junk in [&[0x4f][..], &[0x41, 0, 0, 0], &[0x70], &[]] {
            assert!(!is_dns(junk));
        }
    }
}
