//! Expensive and constrained: where we learn them, in order of authority.
//!
//! 1. NetworkManager's per-device `metered` value, when NetworkManager manages the interface.
//! 2. The overrides `NW_EXPENSIVE` / `NW_CONSTRAINED`: comma-separated interface names. Once a
//!    variable is set, every interface it does not name is known *not* to be so.
//! 3. The config file `/etc/nwkit/path.toml` (or `NW_PATH_CONFIG`) with `expensive = [..]` /
//!    `constrained = [..]`, with the same rule.
//! 4. Cellular interfaces are expensive (as on Apple platforms).
//! 5. Otherwise the answer is "unknown", and we say so rather than guess.
//!
//! This module is pure: the `sys` layer reads the environment, the file and NetworkManager and
//! hands the readings in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::interface::{Interface, InterfaceType};

/// Where a cost judgement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// NetworkManager's `metered` value for the interface.
    NetworkManager,
    /// `NW_EXPENSIVE` / `NW_CONSTRAINED`.
    Environment,
    /// The configuration file (`/etc/nwkit/path.toml` or `NW_PATH_CONFIG`).
    ConfigFile,
    /// What the interface is (cellular counts as expensive).
    InterfaceType,
    /// Nothing says.
    Unknown,
}

/// A yes/no/unknown judgement and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// Yes, no, or unknown (`None`).
    pub value: Option<bool>,
    /// Where it came from.
    pub source: CostSource,
}

/// Interface names listed as expensive and constrained by one source. `None` for a list means
/// the source says nothing about that property.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameLists {
    /// Interfaces listed as expensive (`None`: the source says nothing).
    pub expensive: Option<Vec<String>>,
    /// Interfaces listed as constrained (`None`: the source says nothing).
    pub constrained: Option<Vec<String>>,
}

impl NameLists {
    /// Parses the config file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Parses a comma-separated list of interface names (`NW_EXPENSIVE=wwan0,usb0`).
    pub fn parse_list(value: &str) -> Vec<String> {
        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }
}

/// All readings of cost, from every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostReadings {
    /// NetworkManager's `metered` per interface name, for the interfaces it manages.
    pub networkmanager: BTreeMap<String, bool>,
    /// `NW_EXPENSIVE` and `NW_CONSTRAINED`.
    pub environment: NameLists,
    /// The configuration file.
    pub config_file: NameLists,
}

impl CostReadings {
    /// Is this interface expensive, and who says so.
    pub fn expensive(&self, iface: &Interface) -> Judgement {
        if let Some(&metered) = self.networkmanager.get(&iface.name) {
            return Judgement { value: Some(metered), source: CostSource::NetworkManager };
        }
        let from_lists = listed(iface, &self.environment.expensive, CostSource::Environment)
            .or_else(|| listed(iface, &self.config_file.expensive, CostSource::ConfigFile));
        if let Some(j) = from_lists {
            return j;
        }
        if iface.kind == InterfaceType::Cellular {
            return Judgement { value: Some(true), source: CostSource::InterfaceType };
        }
        Judgement { value: None, source: CostSource::Unknown }
    }

    /// Is this interface constrained (low-data mode), and who says so.
    pub fn constrained(&self, iface: &Interface) -> Judgement {
        listed(iface, &self.environment.constrained, CostSource::Environment)
            .or_else(|| listed(iface, &self.config_file.constrained, CostSource::ConfigFile))
            .unwrap_or(Judgement { value: None, source: CostSource::Unknown })
    }
}

fn listed(iface: &Interface, list: &Option<Vec<String>>, source: CostSource) -> Option<Judgement> {
    list.as_ref().map(|names| Judgement { value: Some(names.contains(&iface.name)), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests::iface;

    #[test]
    fn precedence_networkmanager_then_env_then_file_then_type() {
        let eth = iface(2, "eth0", InterfaceType::Wired);
        let mut r = CostReadings::default();
        assert_eq!(r.expensive(&eth), Judgement { value: None, source: CostSource::Unknown });
        r.config_file.expensive = Some(vec!["eth0".into()]);
        assert_eq!(r.expensive(&eth).source, CostSource::ConfigFile);
        r.environment.expensive = Some(vec![]);
        assert_eq!(
            r.expensive(&eth),
            Judgement { value: Some(false), source: CostSource::Environment }
        );
        r.networkmanager.insert("eth0".into(), true);
        assert_eq!(
            r.expensive(&eth),
            Judgement { value: Some(true), source: CostSource::NetworkManager }
        );
        let wwan = iface(3, "wwan0", InterfaceType::Cellular);
        assert_eq!(CostReadings::default().expensive(&wwan).value, Some(true));
    }

    #[test]
    fn lists_parse_and_bad_config_says_why() {
        assert_eq!(NameLists::parse_list(" a, b ,,c"), vec!["a", "b", "c"]);
        let ok = NameLists::from_toml("expensive = [\"wwan0\"]\n").unwrap();
        assert_eq!(ok.expensive, Some(vec!["wwan0".to_owned()]));
        assert!(ok.constrained.is_none());
        let err = NameLists::from_toml("expensiv = []").unwrap_err();
        assert!(err.contains("expensiv"), "{err}");
    }
}
