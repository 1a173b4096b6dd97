//! Named link conditions, as data, each with where its numbers come from. "Up" is the
//! client's uplink (near → far), "down" its downlink. A round-trip time is split evenly
//! between the two directions.

use std::time::Duration;

use crate::link::{Loss, Profile, QueueLimit};

/// A named pair of profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Its name (`lte`).
    pub name: &'static str,
    /// Client to server.
    pub up: Profile,
    /// Server to client.
    pub down: Profile,
    /// Where the numbers come from.
    pub source: &'static str,
}

const WPT: &str = "WebPageTest's connectivity profiles (www/settings/connectivity.ini.sample in catchpoint/WebPageTest)";
const LIGHTHOUSE: &str = "Lighthouse's mobileSlow4G throttling, \"roughly the 75th percentile of 4G connections\" (lighthouse core/config/constants.js)";
const OURS: &str = "nwkit's own choice, not a published profile";

fn one(kbit: u64, rtt_ms: u64, loss: f64) -> Profile {
    Profile {
        rate_bps: (kbit > 0).then_some(kbit * 1000),
        delay: Duration::from_millis(rtt_ms / 2),
        loss: if loss > 0.0 { Loss::Uniform { p: loss } } else { Loss::None },
        queue: QueueLimit::Packets(100),
        ..Profile::default()
    }
}

/// Every preset, in the order `nw condition` lists them.
pub fn all() -> Vec<Preset> {
    let both = |down_kbit, up_kbit, rtt_ms, loss| {
        (one(up_kbit, rtt_ms, loss), one(down_kbit, rtt_ms, loss))
    };
    let preset = |name, (up, down): (Profile, Profile), source| Preset { name, up, down, source };
    vec![
        // "Mobile 3G (1.6 Mbps/768 Kbps 300ms RTT)"
        preset("3g", both(1600, 768, 300, 0.0), WPT),
        // "Mobile 3G - Slow (780 Kbps/330 Kbps 200ms RTT)"
        preset("3g-slow", both(780, 330, 200, 0.0), WPT),
        // "Mobile Edge (240 Kbps/200 Kbps 840ms RTT)"
        preset("edge", both(240, 200, 840, 0.0), WPT),
        // "Mobile 2G (35 Kbps/32 Kbps 1300ms RTT)"
        preset("2g", both(35, 32, 1300, 0.0), WPT),
        // rttMs 150, throughput 1.6 × 1024 kbit/s down, 750 kbit/s up
        preset("lte", both(1638, 750, 150, 0.0), LIGHTHOUSE),
        // "DSL (1.5 Mbps/384 Kbps 50ms RTT)"
        preset("dsl", both(1500, 384, 50, 0.0), WPT),
        // "Cable (5/1 Mbps 28ms RTT)"
        preset("cable", both(5000, 1000, 28, 0.0), WPT),
        // "FIOS (20/5 Mbps 4ms RTT)"
        preset("fios", both(20_000, 5000, 4, 0.0), WPT),
        // A good home Wi-Fi: 40/33 Mbit/s, 2 ms round trip.
        preset("wifi", both(40_000, 33_000, 2, 0.0), OURS),
        // Hostile: 1 Mbit/s, 1 s round trip, 10 % loss each way.
        preset("very-bad-network", both(1000, 1000, 1000, 0.10), OURS),
        // Nothing gets through.
        preset("100-loss", both(0, 0, 0, 1.0), OURS),
        // DNS answers 3 s late (as LAB.md's S2 makes AAAA late), everything else untouched.
        Preset {
            name: "high-latency-dns",
            up: Profile { dns_delay: Duration::from_millis(1500), ..Profile::default() },
            down: Profile { dns_delay: Duration::from_millis(1500), ..Profile::default() },
            source: OURS,
        },
    ]
}

/// The preset called `name`.
pub fn named(name: &str) -> Option<Preset> {
    all().into_iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_carry_their_numbers_and_sources() {
        let edge = named("Edge").unwrap();
        assert_eq!(edge.down.rate_bps, Some(240_000));
        assert_eq!(edge.up.rate_bps, Some(200_000));
        assert_eq!(edge.up.delay + edge.down.delay, Duration::from_millis(840));
        assert!(edge.source.contains("WebPageTest"));
        assert_eq!(named("100-loss").unwrap().up.loss, Loss::Uniform { p: 1.0 });
        assert_eq!(named("high-latency-dns").unwrap().up.delay, Duration::ZERO);
        assert!(named("nope").is_none());
        for p in all() {
            assert!(!p.source.is_empty(), "{}", p.name);
        }
    }
}
