//! Raw IP sockets that send the resets telling a dropped peeked flow's peer the connection is
//! gone. Their packets carry the PEEK mark, so the filter's own rules let them out without
//! queueing them.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// One raw socket per family, made when first needed.
#[derive(Default)]
pub(crate) struct Raw {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

impl Raw {
    /// Sends `packet` (with its IP header) to `to`, marked `mark`.
    pub(crate) fn send(&mut self, packet: &[u8], to: IpAddr, mark: u32) -> io::Result<()> {
        let (slot, domain) = match to {
            IpAddr::V4(_) => (&mut self.v4, Domain::IPV4),
            IpAddr::V6(_) => (&mut self.v6, Domain::IPV6),
        };
        if slot.is_none() {
            // IPPROTO_RAW: the packet brings its own IP header (raw(7), ipv6(7)).
            let s = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
            s.set_mark(mark)?;
            // Sent from the host's event loop: a full send buffer loses a reset (the peer
            // learns when it next sends), never holds up the loop.
            s.set_nonblocking(true)?;
            *slot = Some(s);
        }
        let Some(s) = slot.as_ref() else { return Ok(()) };
        // For raw IPv6 sockets the port must be 0.
        s.send_to(packet, &SockAddr::from(SocketAddr::new(to, 0)))?;
        Ok(())
    }
}
