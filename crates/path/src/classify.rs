//! Classification by function: what an interface *is*, from kernel facts, never from its name.
//!
//! Renaming `eth0` to `wlan-fake` changes nothing here, because no rule reads the name.

use crate::interface::{Flags, InterfaceType, LinkFacts, LinkType};

// ARPHRD numbers from <linux/if_arp.h>.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_IEEE80211: u16 = 801;
const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_NONE: u16 = 0xfffe;

/// Link kinds that name a modem's data interface.
const CELLULAR_KINDS: [&str; 3] = ["wwan", "rmnet", "qmi_wwan"];

/// The functional type of an interface.
pub fn classify(facts: &LinkFacts, flags: &Flags) -> InterfaceType {
    if flags.loopback || facts.arphrd == ARPHRD_LOOPBACK {
        return InterfaceType::Loopback;
    }
    let devtype = facts.devtype.as_deref();
    if facts.wireless || devtype == Some("wlan") {
        return InterfaceType::Wifi;
    }
    let kind = facts.kind.as_deref();
    if devtype == Some("wwan") || kind.is_some_and(|k| CELLULAR_KINDS.contains(&k)) {
        return InterfaceType::Cellular;
    }
    // A link kind means the kernel made it in software: veth, tun, bridge, wireguard, dummy,
    // vlan, bond … all "other", however Ethernet-like their framing.
    if kind.is_some() || devtype.is_some() {
        return InterfaceType::Other;
    }
    if facts.arphrd == ARPHRD_ETHER && facts.has_device {
        return InterfaceType::Wired;
    }
    InterfaceType::Other
}

/// The legacy link-layer type.
pub fn link_type(arphrd: u16) -> LinkType {
    match arphrd {
        ARPHRD_ETHER => LinkType::Ethernet,
        ARPHRD_LOOPBACK => LinkType::Loopback,
        ARPHRD_NONE | ARPHRD_RAWIP => LinkType::None,
        ARPHRD_PPP => LinkType::PointToPoint,
        ARPHRD_IEEE80211 | ARPHRD_IEEE80211_RADIOTAP => LinkType::Ieee80211,
        n => LinkType::Other(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: Option<&str>, arphrd: u16, has_device: bool) -> LinkFacts {
        LinkFacts { kind: kind.map(str::to_owned), arphrd, has_device, ..LinkFacts::default() }
    }

    #[test]
    fn hardware_ethernet_is_wired_and_veth_is_not() {
        let none = Flags::default();
        assert_eq!(classify(&facts(None, ARPHRD_ETHER, true), &none), InterfaceType::Wired);
        assert_eq!(
            classify(&facts(Some("veth"), ARPHRD_ETHER, false), &none),
            InterfaceType::Other
        );
        assert_eq!(
            classify(&facts(Some("bridge"), ARPHRD_ETHER, false), &none),
            InterfaceType::Other
        );
        assert_eq!(classify(&facts(None, ARPHRD_ETHER, false), &none), InterfaceType::Other);
    }

    #[test]
    fn tun_is_other_with_no_link_layer() {
        let f = facts(Some("tun"), ARPHRD_NONE, false);
        assert_eq!(classify(&f, &Flags::default()), InterfaceType::Other);
        assert_eq!(link_type(f.arphrd), LinkType::None);
    }

    #[test]
    fn wireless_and_wwan_win_over_ethernet_framing() {
        let mut f = facts(None, ARPHRD_ETHER, true);
        f.wireless = true;
        assert_eq!(classify(&f, &Flags::default()), InterfaceType::Wifi);
        let mut f = facts(None, ARPHRD_RAWIP, true);
        f.devtype = Some("wwan".into());
        assert_eq!(classify(&f, &Flags::default()), InterfaceType::Cellular);
    }

    #[test]
    fn loopback_by_flag_or_arphrd() {
        let flags = Flags { loopback: true, ..Flags::default() };
        assert_eq!(classify(&facts(None, ARPHRD_ETHER, false), &flags), InterfaceType::Loopback);
        let none = Flags::default();
        assert_eq!(classify(&facts(None, ARPHRD_LOOPBACK, false), &none), InterfaceType::Loopback);
    }
}
