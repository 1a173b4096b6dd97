//! Linux: rtnetlink for links, addresses and routes; sysfs for what a link is; the resolver
//! configuration for name servers; NetworkManager, the environment and a config file for cost.

mod netlink;
mod sysfs;

pub(crate) use netlink::{Bound, Subscription};
pub(crate) use sysfs::{networkmanager_metered, networkmanager_monitor, networkmanager_present};

use std::collections::BTreeMap;

use crate::cost::{CostReadings, NameLists};
use crate::{PathError, Snapshot};

/// Where the config file lives, unless `NW_PATH_CONFIG` names another.
pub(crate) const CONFIG_FILE: &str = "/etc/nwkit/path.toml";

/// One full reading, links and addresses and routes, plus the resolver's name servers.
pub(crate) fn snapshot() -> Result<Snapshot, PathError> {
    let mut snap = netlink::dump()?;
    for iface in &mut snap.interfaces {
        sysfs::fill_facts(&iface.name, &mut iface.facts);
        iface.kind = crate::classify::classify(&iface.facts, &iface.flags);
    }
    snap.dns_servers = sysfs::name_servers(std::path::Path::new("/etc/resolv.conf"));
    Ok(snap)
}

/// Cost readings from every source, NetworkManager's read now. A config file that cannot be
/// parsed is an error: ignoring it would silently report the wrong cost.
pub(crate) fn cost_readings(snapshot: &Snapshot) -> Result<CostReadings, PathError> {
    cost_readings_with(snapshot, &networkmanager_metered())
}

/// Cost readings with NetworkManager's metered values as last read (by the path service, which
/// reads them beside its snapshots so that no update waits for `nmcli`).
pub(crate) fn cost_readings_with(
    snapshot: &Snapshot,
    networkmanager: &BTreeMap<String, bool>,
) -> Result<CostReadings, PathError> {
    let var = |name: &str| std::env::var(name).ok().map(|v| NameLists::parse_list(&v));
    let environment =
        NameLists { expensive: var("NW_EXPENSIVE"), constrained: var("NW_CONSTRAINED") };
    let path = std::env::var("NW_PATH_CONFIG").unwrap_or_else(|_| CONFIG_FILE.to_owned());
    let config_file = match std::fs::read_to_string(&path) {
        Ok(text) => NameLists::from_toml(&text).map_err(|why| PathError::Config { path, why })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NameLists::default(),
        Err(e) => return Err(PathError::Config { path, why: e.to_string() }),
    };
    let networkmanager = networkmanager
        .iter()
        .filter(|(name, _)| snapshot.interface_named(name).is_some())
        .map(|(name, &metered)| (name.clone(), metered))
        .collect();
    Ok(CostReadings { networkmanager, environment, config_file })
}
