//! Reading a flow's key from a queued packet's IP and transport headers. Input from the
//! network: every length is checked, and anything that does not parse is `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::flow::{Direction, FlowKey, Transport};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The key of the flow a packet going `direction` belongs to: this host's end is its source
/// when outbound, its destination when inbound. `None` for a packet that is not TCP or UDP
/// over IPv4 or IPv6, a non-first fragment, or a truncated one.
pub(crate) fn flow_key(packet: &[u8], direction: Direction) -> Option<FlowKey> {
    let (src, dst, proto, transport) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl {
                return None;
            }
            // A fragment other than the first carries no transport header.
            let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
            if frag != 0 {
                return None;
            }
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).ok()?);
            (IpAddr::V4(src), IpAddr::V4(dst), packet[9], &packet[ihl..])
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).ok()?);
            let (proto, rest) = skip_extensions(packet[6], &packet[40..])?;
            (IpAddr::V6(src), IpAddr::V6(dst), proto, rest)
        }
        _ => return None,
    };
    let transport_kind = match proto {
        TCP => Transport::Tcp,
        UDP => Transport::Udp,
        _ => return None,
    };
    if transport.len() < 4 {
        return None;
    }
    let sport = u16::from_be_bytes([transport[0], transport[1]]);
    let dport = u16::from_be_bytes([transport[2], transport[3]]);
    let (source, destination) = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
    let (local, remote) = match direction {
        Direction::Outbound => (source, destination),
        Direction::Inbound => (destination, source),
    };
    Some(FlowKey { transport: transport_kind, local, remote })
}

/// A TCP segment's place in its stream, read from a queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    /// The sequence number of its first byte (of the SYN, for a SYN).
    pub seq: u32,
    /// The SYN flag.
    pub syn: bool,
    /// The ACK flag (with SYN: a SYN-ACK, the answer to a flow's SYN).
    pub ack: bool,
    /// The FIN flag: the sender's stream ends after this segment's payload.
    pub fin: bool,
    /// The RST flag.
    pub rst: bool,
    /// The PSH flag: the sender has nothing more to send for now.
    pub psh: bool,
    /// The payload's length, from the IP header (the packet may have been cut short when
    /// queued; then `payload` is shorter).
    pub len: usize,
    /// The payload bytes that were queued.
    pub payload: &'a [u8],
}

/// The TCP segment in a packet, or `None` when it is not TCP or does not parse.
pub(crate) fn tcp_segment(packet: &[u8]) -> Option<Segment<'_>> {
    let (proto, ip_payload_len, transport) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl {
                return None;
            }
            if u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            (packet[9], total.checked_sub(ihl)?, &packet[ihl..])
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let (proto, rest) = skip_extensions(packet[6], &packet[40..])?;
            let headers = packet.len() - 40 - rest.len();
            (proto, payload_len.checked_sub(headers)?, rest)
        }
        _ => return None,
    };
    if proto != TCP || transport.len() < 20 {
        return None;
    }
    let offset = usize::from(transport[12] >> 4) * 4;
    if offset < 20 || transport.len() < offset {
        return None;
    }
    let len = ip_payload_len.checked_sub(offset)?;
    let flags = transport[13];
    let payload = &transport[offset..];
    Some(Segment {
        seq: u32::from_be_bytes([transport[4], transport[5], transport[6], transport[7]]),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        psh: flags & 0x08 != 0,
        len,
        payload: &payload[..payload.len().min(len)],
    })
}

/// The payload of a UDP datagram (IPv4 or IPv6, the first fragment), as far as it was queued
/// and its UDP length says; `None` when the packet is not UDP or does not parse.
pub(crate) fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let transport = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl || packet[9] != UDP {
                return None;
            }
            if u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0 {
                return None;
            }
            &packet[ihl..]
        }
        6 => {
            let (proto, rest) = skip_extensions(*packet.get(6)?, packet.get(40..)?)?;
            if proto != UDP {
                return None;
            }
            rest
        }
        _ => return None,
    };
    let len = usize::from(u16::from_be_bytes([*transport.get(4)?, *transport.get(5)?]));
    let end = len.min(transport.len());
    transport.get(8..end)
}

/// The whole DNS-over-TCP messages at the start of `data`, each after its two-byte length
/// (RFC 1035 §4.2.2), and what is left after them.
fn length_prefixed(mut data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut messages = Vec::new();
    while let [a, b, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some(message) = rest.get(..len) else { break };
        messages.push(message);
        data = &rest[len..];
    }
    (messages, data)
}

/// Connections that DNS answers arrive over, at most, followed at once.
const DNS_STREAMS: usize = 1024;

/// Segments that came ahead of a gap, at most, held per connection until the gap is filled.
const AHEAD_SEGMENTS: usize = 16;

/// Their bytes, at most, per connection.
const AHEAD_BYTES: usize = 64 << 10;

/// How far ahead of the next expected byte a segment may start and still be taken as one that
/// came ahead of a gap (a receive window is at most 1 GiB, RFC 7323 §2.3); one farther, or
/// behind by more, is of another stream.
const WINDOW: u32 = 1 << 30;

/// DNS answers arriving over TCP, put back together per connection: a message may span
/// segments and several may share one (RFC 7766 §8). A connection is followed from its
/// SYN-ACK (or, joined mid-way, from the first segment seen, read as if it began a message);
/// a resent segment is skipped (or its new tail taken), and one that comes ahead of a gap — a
/// lost segment, sent again later, or two swapped on the way — is held until the gap is
/// filled, so the answer it belongs to is still read. At most [`DNS_STREAMS`] connections
/// are followed (more forget them all), each holding one message's 64 KiB and
/// [`AHEAD_SEGMENTS`] segments ([`AHEAD_BYTES`]) ahead of a gap; past that a gap's answers
/// are lost. A FIN or RST forgets its connection.
#[derive(Default)]
pub(crate) struct DnsOverTcp {
    streams: std::collections::HashMap<FlowKey, Stream>,
}

/// One connection's answers: the sequence number of the next byte expected, the bytes of a
/// message begun, and segments that came ahead of a gap.
#[derive(Debug, Default)]
struct Stream {
    next: u32,
    held: Vec<u8>,
    ahead: Vec<(u32, Vec<u8>)>,
}

impl Stream {
    /// Takes the segment `payload` at `seq`; the whole messages it completes go to `out`.
    fn take(&mut self, seq: u32, payload: &[u8], out: &mut Vec<Vec<u8>>) {
        let ahead_by = seq.wrapping_sub(self.next);
        if ahead_by != 0 && ahead_by < WINDOW {
            let bytes: usize = self.ahead.iter().map(|(_, p)| p.len()).sum();
            let fits = self.ahead.len() < AHEAD_SEGMENTS && bytes + payload.len() <= AHEAD_BYTES;
            if fits && !payload.is_empty() && !self.ahead.iter().any(|(s, _)| *s == seq) {
                self.ahead.push((seq, payload.to_vec()));
            }
            return;
        }
        let behind = self.next.wrapping_sub(seq);
        if behind > WINDOW {
            // Of no stream this one knows: read from its own start.
            *self = Self { next: seq, ..Self::default() };
        }
        self.append(seq, payload);
        // The segments held ahead that now follow on.
        while let Some(i) = self.ahead.iter().position(|(s, _)| self.next.wrapping_sub(*s) < WINDOW)
        {
            let (s, p) = self.ahead.swap_remove(i);
            self.append(s, &p);
        }
        let (messages, rest) = length_prefixed(&self.held);
        out.extend(messages.into_iter().map(<[u8]>::to_vec));
        let used = self.held.len() - rest.len();
        self.held.drain(..used);
    }

    /// Appends what of `payload` at `seq` (which starts at or before `next`) is new.
    fn append(&mut self, seq: u32, payload: &[u8]) {
        let taken = usize::try_from(self.next.wrapping_sub(seq)).unwrap_or(usize::MAX);
        if let Some(new) = payload.get(taken..) {
            self.held.extend_from_slice(new);
            let len = u32::try_from(new.len()).unwrap_or(u32::MAX);
            self.next = self.next.wrapping_add(len);
        }
    }
}

impl DnsOverTcp {
    /// The DNS messages a queued answer completes: a UDP datagram's payload, or the whole
    /// messages a TCP segment finishes for its connection (with those held ahead of a gap
    /// it fills).
    pub(crate) fn messages(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        if let Some(payload) = udp_payload(packet) {
            return vec![payload.to_vec()];
        }
        let (Some(seg), Some(key)) = (tcp_segment(packet), flow_key(packet, Direction::Inbound))
        else {
            return Vec::new();
        };
        if seg.rst {
            self.streams.remove(&key);
            return Vec::new();
        }
        // The SYN-ACK: the answers' stream starts after it (its payload too, if any).
        let (mut stream, seq) = match (seg.syn, self.streams.remove(&key)) {
            (true, _) => {
                let next = seg.seq.wrapping_add(1);
                (Stream { next, ..Stream::default() }, next)
            }
            (false, Some(stream)) => (stream, seg.seq),
            (false, None) => (Stream { next: seg.seq, ..Stream::default() }, seg.seq),
        };
        let mut out = Vec::new();
        stream.take(seq, seg.payload, &mut out);
        if !seg.fin {
            if self.streams.len() >= DNS_STREAMS {
                self.streams.clear();
            }
            self.streams.insert(key, stream);
        }
        out
    }
}

/// A TCP reset from `key.local` to `key.remote` with sequence number `seq` (no ACK), with its
/// IP header, ready for a raw socket: it tells the peer of a dropped flow at once.
pub(crate) fn reset(key: FlowKey, seq: u32) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&key.local.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&key.remote.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x04; // RST
    let (mut packet, pseudo) = match (key.local.ip(), key.remote.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0];
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            let sum = checksum(&[&ip]).to_be_bytes();
            ip[10..12].copy_from_slice(&sum);
            let pseudo = [&src.octets()[..], &dst.octets(), &[0, TCP, 0, 20]].concat();
            (ip, pseudo)
        }
        (src, dst) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let mut ip = vec![0x60, 0, 0, 0, 0, 20, TCP, 64];
            ip.extend_from_slice(&v6(src));
            ip.extend_from_slice(&v6(dst));
            let pseudo = [&v6(src)[..], &v6(dst), &[0, 0, 0, 20, 0, 0, 0, TCP]].concat();
            (ip, pseudo)
        }
    };
    let sum = checksum(&[&pseudo, &tcp]).to_be_bytes();
    tcp[16..18].copy_from_slice(&sum);
    packet.extend_from_slice(&tcp);
    packet
}

/// A TCP packet as it goes on without its payload, its headers (options included) as they
/// were and its lengths and checksums made right (RFC 791 §3.1, RFC 9293 §3.1, RFC 8200 §8.1).
/// For a SYN that carries data (TCP Fast Open, RFC 7413): the SYN opens the connection, the
/// answer acknowledges the SYN alone, and the sender sends the data again after the handshake
/// (RFC 7413 §4.2.2). `None` when the packet is not a whole TCP segment over IPv4 or IPv6.
pub(crate) fn without_payload(packet: &[u8]) -> Option<Vec<u8>> {
    let seg = tcp_segment(packet)?;
    if seg.payload.len() != seg.len {
        return None; // cut short when queued: its headers are whole, but to be sure
    }
    let headers = packet.len().checked_sub(seg.len)?;
    let mut out = packet.get(..headers)?.to_vec();
    let (ip_len, pseudo) = match out[0] >> 4 {
        4 => {
            let ihl = usize::from(out[0] & 0x0f) * 4;
            out[2..4].copy_from_slice(&u16::try_from(headers).ok()?.to_be_bytes());
            out[10..12].fill(0);
            let sum = checksum(&[&out[..ihl]]).to_be_bytes();
            out[10..12].copy_from_slice(&sum);
            let tcp_len = u16::try_from(headers - ihl).ok()?.to_be_bytes();
            (ihl, [&out[12..20], &[0, TCP], &tcp_len[..]].concat())
        }
        _ => {
            let (_, rest) = skip_extensions(out[6], packet.get(40..)?)?;
            let transport = packet.len() - rest.len();
            out[4..6].copy_from_slice(&u16::try_from(headers - 40).ok()?.to_be_bytes());
            let tcp_len = u32::try_from(headers - transport).ok()?.to_be_bytes();
            (transport, [&out[8..40], &tcp_len[..], &[0, 0, 0, TCP]].concat())
        }
    };
    out[ip_len + 16..ip_len + 18].fill(0);
    let sum = checksum(&[&pseudo, &out[ip_len..]]).to_be_bytes();
    out[ip_len + 16..ip_len + 18].copy_from_slice(&sum);
    Some(out)
}

/// The Internet checksum (RFC 1071) of the concatenated parts, each of even length.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// Walks IPv6 extension headers (RFC 8200 §4) to the transport header.
fn skip_extensions(mut next: u8, mut rest: &[u8]) -> Option<(u8, &[u8])> {
    for _ in 0..8 {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units, not counting
            // the first 8.
            0 | 43 | 60 => {
                let len = (usize::from(*rest.get(1)?) + 1) * 8;
                next = *rest.first()?;
                rest = rest.get(len..)?;
            }
            // Fragment: 8 octets; only the first fragment has the transport header.
            44 => {
                let offset = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) >> 3;
                if offset != 0 {
                    return None;
                }
                next = *rest.first()?;
                rest = rest.get(8..)?;
            }
            _ => return Some((next, rest)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound_key(packet: &[u8]) -> Option<FlowKey> {
        flow_key(packet, Direction::Outbound)
    }

    fn v4(proto: u8, ports: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.extend_from_slice(&ports);
        p.extend_from_slice(&[0; 4]);
        p
    }

    #[test]
    fn keys_from_v4_and_v6_and_nothing_from_garbage() {
        let k = outbound_key(&v4(TCP, [0x30, 0x39, 0x01, 0xbb])).unwrap_or_else(|| panic!("v4"));
        let inbound = flow_key(&v4(TCP, [0x30, 0x39, 0x01, 0xbb]), Direction::Inbound);
        let inbound = inbound.unwrap_or_else(|| panic!("v4 inbound"));
        assert_eq!((inbound.local, inbound.remote), (k.remote, k.local), "the ends swap");
        assert_eq!(k.to_string(), "tcp 10.0.0.1:12345 -> 10.0.0.2:443");
        let mut six = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        six.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        six.extend_from_slice(
            &"2001:db8::2".parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED).octets(),
        );
        six.extend_from_slice(&[UDP, 0, 0, 0, 0, 0, 0, 0]); // destination options, 8 octets
        six.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        let k = outbound_key(&six).unwrap_or_else(|| panic!("v6"));
        assert_eq!(k.to_string(), "udp [::1]:53 -> [2001:db8::2]:53");

        assert_eq!(outbound_key(&v4(1, [0; 4])), None, "ICMP is not a flow here");
        let mut frag = v4(UDP, [0; 4]);
        frag[7] = 8;
        assert_eq!(outbound_key(&frag), None, "a later fragment");
        for junk in [&[][..], &[0x45], &[0x4f; 30], &[0x60; 39], &[0xff; 64]] {
            assert_eq!(outbound_key(junk), None);
        }
        // Every truncation of a good packet is refused or read, never a panic.
        let good = v4(TCP, [1, 2, 3, 4]);
        for n in 0..good.len() {
            let _ = outbound_key(&good[..n]);
        }
    }

    /// An IPv4 TCP packet with `flags` and `payload`, whose IP length says `claimed` payload
    /// bytes.
    fn segment(flags: u8, payload: &[u8], claimed: usize) -> Vec<u8> {
        let total = u16::try_from(20 + 20 + claimed).unwrap_or(u16::MAX).to_be_bytes();
        let mut p = vec![0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, TCP, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn resets_parse_back_and_their_checksums_hold() {
        for (local, remote) in
            [("10.0.0.1:40000", "10.0.0.2:443"), ("[2001:db8::1]:40000", "[2001:db8::2]:80")]
        {
            let key = FlowKey {
                transport: Transport::Tcp,
                local: local.parse().unwrap_or_else(|e| panic!("{e}")),
                remote: remote.parse().unwrap_or_else(|e| panic!("{e}")),
            };
            let p = reset(key, 0xdead_beef);
            assert_eq!(outbound_key(&p), Some(key));
            let s = tcp_segment(&p).unwrap_or_else(|| panic!("a segment"));
            assert!(s.rst && !s.syn && s.len == 0 && s.seq == 0xdead_beef);
            // Summed with its pseudo-header, a TCP segment with a right checksum sums to zero.
            let (ip_len, pseudo) = if p[0] >> 4 == 4 {
                assert_eq!(checksum(&[&p[..20]]), 0, "the IPv4 header's checksum");
                (20, [&p[12..20], &[0, TCP, 0, 20][..]].concat())
            } else {
                (40, [&p[8..40], &[0, 0, 0, 20, 0, 0, 0, TCP][..]].concat())
            };
            assert_eq!(checksum(&[&pseudo, &p[ip_len..]]), 0, "{local}");
        }
    }

    #[test]
    fn a_syn_without_its_data_has_right_lengths_and_checksums() {
        // A SYN with a Fast Open cookie option (kind 34) and 5 bytes of data, both families.
        let options = [34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1];
        let tcp = |payload: &[u8]| {
            let mut t = vec![0x30, 0x39, 0x01, 0xbb, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0];
            t.extend_from_slice(&[0x80, 0x02, 0xff, 0xff, 0x12, 0x34, 0, 0]);
            t.extend_from_slice(&options);
            t.extend_from_slice(payload);
            t
        };
        let total = u16::try_from(20 + 32 + 5).unwrap_or(0).to_be_bytes();
        let mut four = vec![0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, TCP, 0xab, 0xcd];
        four.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        four.extend(tcp(b"hello"));
        let mut six = vec![0x60, 0, 0, 0, 0, 8 + 32 + 5, 60, 64];
        six.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(8));
        six.extend_from_slice(&[TCP, 0, 0, 0, 0, 0, 0, 0]); // destination options, 8 octets
        six.extend(tcp(b"hello"));
        for p in [four, six] {
            let bare = without_payload(&p).unwrap_or_else(|| panic!("stripped"));
            assert_eq!(bare.len(), p.len() - 5);
            let s = tcp_segment(&bare).unwrap_or_else(|| panic!("a segment"));
            assert!(s.syn && s.len == 0 && s.seq == 0xdead_beef, "{s:?}");
            assert_eq!(flow_key(&bare, Direction::Outbound), flow_key(&p, Direction::Outbound));
            let (ip_len, pseudo) = if p[0] >> 4 == 4 {
                assert_eq!(checksum(&[&bare[..20]]), 0, "the IPv4 header's checksum");
                (20, [&bare[12..20], &[0, TCP, 0, 32][..]].concat())
            } else {
                (48, [&bare[8..40], &[0, 0, 0, 32, 0, 0, 0, TCP][..]].concat())
            };
            assert_eq!(&bare[ip_len + 20..], &options, "the options are kept");
            assert_eq!(checksum(&[&pseudo, &bare[ip_len..]]), 0, "the TCP checksum");
            // Cut short by the queue, or not TCP: left alone.
            assert_eq!(without_payload(&p[..p.len() - 1]), None);
            for n in 0..p.len() {
                let _ = without_payload(&p[..n]);
            }
        }
        assert_eq!(without_payload(&v4(UDP, [0; 4])), None);
    }

    #[test]
    fn udp_payloads_end_where_their_length_says() {
        let mut p = v4(UDP, [0, 53, 0x30, 0x39]);
        p[24..28].copy_from_slice(&[0, 12, 0, 0]); // UDP length 12: 4 payload bytes
        p.extend_from_slice(b"dnsX-padding");
        assert_eq!(udp_payload(&p), Some(&b"dnsX"[..]));
        assert_eq!(udp_payload(&v4(TCP, [0; 4])), None, "TCP");
        for n in 0..p.len() {
            let _ = udp_payload(&p[..n]);
        }
    }

    /// A segment of the DNS connection carrying `payload` from sequence number `seq`.
    fn at(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = segment(flags, payload, payload.len());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p
    }

    #[test]
    fn dns_messages_are_put_back_together_across_segments() {
        let mut p = v4(UDP, [0, 53, 0x30, 0x39]);
        p[24..28].copy_from_slice(&[0, 12, 0, 0]);
        p.extend_from_slice(b"dnsX");
        let mut dns = DnsOverTcp::default();
        assert_eq!(dns.messages(&p), [b"dnsX".to_vec()]);
        // Over TCP: a two-byte length, then the message; two in one segment are both read.
        assert_eq!(
            dns.messages(&at(100, 0x18, b"\x00\x05hello\x00\x02hi")),
            [b"hello".to_vec(), b"hi".to_vec()]
        );
        // A message in three segments, the length split from it, and the next message begun
        // in the last one (on a connection seen from its SYN-ACK).
        let mut dns = DnsOverTcp::default();
        assert!(dns.messages(&at(999, 0x12, b"")).is_empty());
        let stream = b"\x00\x0bhello world\x00\x03abc";
        assert!(dns.messages(&at(1000, 0x18, &stream[..1])).is_empty());
        assert!(dns.messages(&at(1001, 0x18, &stream[1..6])).is_empty());
        assert_eq!(dns.messages(&at(1006, 0x18, &stream[6..15])), [b"hello world".to_vec()]);
        // Resent: the whole of an old segment is skipped; one that reaches past is read for
        // its new tail.
        assert!(dns.messages(&at(1006, 0x18, &stream[6..15])).is_empty());
        assert_eq!(dns.messages(&at(1013, 0x18, &stream[13..])), [b"abc".to_vec()]);
        // Far from anything expected (past a receive window): read from its own start, what
        // was pending dropped.
        assert!(dns.messages(&at(1 << 31, 0x18, b"\x00\x01z")) == [b"z".to_vec()]);
        // A FIN forgets the connection's pending bytes.
        assert!(dns.messages(&at(7000, 0x19, b"\x00\x04ab")).is_empty());
        assert!(dns.messages(&at(7004, 0x18, b"cd")).is_empty());
        // Cut and empty segments: nothing, and never a panic.
        assert!(dns.messages(&segment(0x10, b"", 0)).is_empty());
        let whole = at(9000, 0x18, b"\x00\x05hello\x00\x02hi");
        for n in 0..whole.len() {
            let _ = DnsOverTcp::default().messages(&whole[..n]);
        }
    }

    /// A segment that comes ahead of a gap — the one before it lost and sent again, or the
    /// two swapped — is held until the gap is filled, and the answer it carries is read then.
    #[test]
    fn dns_answers_after_a_gap_are_read_once_it_is_filled() {
        let stream = b"\x00\x0bhello world\x00\x03abc\x00\x02hi";
        let syn_ack = || at(999, 0x12, b"");
        // The first segment lost: the second waits for it, then both are read.
        let mut dns = DnsOverTcp::default();
        assert!(dns.messages(&syn_ack()).is_empty());
        assert!(dns.messages(&at(1006, 0x18, &stream[6..16])).is_empty(), "ahead of the gap");
        assert!(dns.messages(&at(1016, 0x18, &stream[16..])).is_empty(), "still ahead");
        assert_eq!(
            dns.messages(&at(1000, 0x18, &stream[..6])),
            [b"hello world".to_vec(), b"abc".to_vec(), b"hi".to_vec()]
        );
        // Resent copies of what was read, whole or overlapping, read nothing twice.
        assert!(dns.messages(&at(1006, 0x18, &stream[6..16])).is_empty());
        assert!(dns.messages(&at(1000, 0x18, &stream[..])).is_empty());
        // A gap mid-stream, filled by a resend that overlaps both sides of it.
        let mut dns = DnsOverTcp::default();
        assert!(dns.messages(&syn_ack()).is_empty());
        assert!(dns.messages(&at(1000, 0x18, &stream[..4])).is_empty());
        assert!(dns.messages(&at(1012, 0x18, &stream[12..])).is_empty());
        assert_eq!(
            dns.messages(&at(1002, 0x18, &stream[2..14])),
            [b"hello world".to_vec(), b"abc".to_vec(), b"hi".to_vec()]
        );
        // Joined mid-way (no SYN-ACK seen): read from the first segment, gaps held the same.
        let mut dns = DnsOverTcp::default();
        assert_eq!(dns.messages(&at(5000, 0x18, b"\x00\x01z")), [b"z".to_vec()]);
        assert!(dns.messages(&at(5007, 0x18, b"llo")).is_empty());
        assert_eq!(dns.messages(&at(5003, 0x18, b"\x00\x05he")), [b"hello".to_vec()]);
        // At most AHEAD_SEGMENTS held: past that a gap's answers are lost, never the memory.
        let mut dns = DnsOverTcp::default();
        assert!(dns.messages(&syn_ack()).is_empty());
        for n in 0..100u32 {
            assert!(dns.messages(&at(2000 + n * 10, 0x18, &[7; 10])).is_empty());
        }
        let held = dns.streams.values().map(|s| s.ahead.len()).sum::<usize>();
        assert_eq!(held, AHEAD_SEGMENTS);
        let big = vec![7; 60_000];
        let mut dns = DnsOverTcp::default();
        assert!(dns.messages(&syn_ack()).is_empty());
        assert!(dns.messages(&at(2000, 0x18, &big)).is_empty());
        assert!(
            dns.messages(&at(2000 + 70_000, 0x18, &big[..AHEAD_BYTES - 60_000 + 1])).is_empty()
        );
        let held = dns.streams.values().map(|s| s.ahead.len()).sum::<usize>();
        assert_eq!(held, 1, "bytes past AHEAD_BYTES are not held");
        // A RST forgets the connection, what it held ahead with it.
        assert!(dns.messages(&at(3000, 0x14, b"")).is_empty());
        assert!(dns.streams.is_empty());
    }

    #[test]
    fn dns_streams_are_bounded() {
        let mut dns = DnsOverTcp::default();
        for port in 0..u16::try_from(DNS_STREAMS + 10).unwrap_or(u16::MAX) {
            let mut p = at(1, 0x18, b"\xff\xffpart");
            p[22..24].copy_from_slice(&port.to_be_bytes());
            assert!(dns.messages(&p).is_empty());
        }
        assert!(dns.streams.len() <= DNS_STREAMS);
    }

    #[test]
    fn tcp_segments_say_where_their_bytes_go() {
        let (data, syn, cut, padded) = (
            segment(0x18, b"hello", 5),
            segment(0x02, b"", 0),
            segment(0x11, b"hel", 5),
            segment(0x10, b"hi\0\0\0", 2),
        );
        let s = tcp_segment(&data).unwrap_or_else(|| panic!("a segment"));
        assert_eq!((s.seq, s.syn, s.fin, s.rst, s.psh), (0xdead_beef, false, false, false, true));
        assert_eq!((s.len, s.payload), (5, &b"hello"[..]));
        let syn = tcp_segment(&syn).unwrap_or_else(|| panic!("a SYN"));
        assert!(syn.syn && syn.payload.is_empty());
        // Cut short by the queue's copy range: the length still says how long it is.
        let cut = tcp_segment(&cut).unwrap_or_else(|| panic!("cut"));
        assert!(cut.fin && cut.len == 5 && cut.payload == b"hel");
        // Ethernet padding beyond the IP length is not payload.
        let padded = tcp_segment(&padded).unwrap_or_else(|| panic!("pad"));
        assert_eq!(padded.payload, b"hi");
        assert_eq!(tcp_segment(&v4(UDP, [0; 4])), None, "UDP");
        let mut short = segment(0x10, b"", 0);
        short[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(tcp_segment(&short), None, "an IP length shorter than the headers");
        let good = segment(0x18, b"payload", 7);
        for n in 0..good.len() {
            let _ = tcp_segment(&good[..n]);
        }
    }
}
