//! Saved tunnel configurations (the `NETunnelProviderManager` analogue): each names its
//! provider, its options, the host's switches and on-demand rules, and can be listed, enabled,
//! disabled and removed. A host started from one follows it: removing the configuration stops
//! the tunnel with `configuration_removed`, disabling it with `provider_disabled`.
//!
//! One JSON file per configuration, `NAME.json`, in [`Store::dir`] (`/etc/nwkit/tunnels`, or
//! `NW_TUNNEL_CONFIG_DIR`), owner-only (options may hold secrets), written whole: a temporary
//! file, fsync, rename.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path as FsPath, PathBuf};

use nw_path::{InterfaceType, Path, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where configurations are kept unless [`DIR_ENV`] says otherwise.
pub const DEFAULT_DIR: &str = "/etc/nwkit/tunnels";
/// The environment variable that moves the store (tests, and users without `/etc`).
pub const DIR_ENV: &str = "NW_TUNNEL_CONFIG_DIR";
/// A configuration file larger than this is refused.
pub const MAX_FILE: u64 = 1 << 20;

/// A saved configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    /// What runs the tunnel.
    pub provider: ProviderSpec,
    /// A disabled configuration is not started, and a running one stops.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The host's kill switch (`HostOptions::kill_switch`).
    #[serde(default)]
    pub kill_switch: bool,
    /// The host's `excludeLocalNetworks` (`HostOptions::exclude_local`).
    #[serde(default)]
    pub exclude_local: bool,
    /// On-demand rules, first match wins; none: the tunnel runs whatever the path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_demand: Vec<OnDemandRule>,
}

fn yes() -> bool {
    true
}

/// What runs a configuration's tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderSpec {
    /// A provider executable with its arguments and start options.
    Program {
        /// The executable.
        program: PathBuf,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// The options passed in `start` (a JSON object).
        #[serde(default = "empty_object")]
        options: Value,
    },
    /// nw's WireGuard provider with a wg-quick file, read each time the tunnel starts.
    Wireguard {
        /// The wg-quick file.
        file: PathBuf,
    },
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Connect or stay disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDemandAction {
    /// Run the tunnel.
    Connect,
    /// Do not run it.
    Disconnect,
}

/// One on-demand rule: an action for paths whose primary interface is of one of these types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandRule {
    /// What to do when it matches.
    pub action: OnDemandAction,
    /// `wired`, `wifi`, `cellular`, `other`; empty: any satisfied path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interface_types: Vec<String>,
}

impl OnDemandRule {
    /// Reads `connect`, `disconnect`, `connect=wifi,wired` (the command line's form).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (action, types) = text.split_once('=').unwrap_or((text, ""));
        let action = match action {
            "connect" => OnDemandAction::Connect,
            "disconnect" => OnDemandAction::Disconnect,
            _ => {
                return Err(format!(
                    "on-demand rule {text:?}: write connect or disconnect, optionally =TYPE,TYPE (wired, wifi, cellular, other)"
                ));
            }
        };
        let rule = Self {
            action,
            interface_types: types.split(',').filter(|t| !t.is_empty()).map(String::from).collect(),
        };
        rule.types()?;
        Ok(rule)
    }

    /// The interface types, checked.
    pub fn types(&self) -> Result<Vec<InterfaceType>, String> {
        self.interface_types.iter().map(|t| t.parse()).collect()
    }
}

/// What on-demand rules say for a path: see [`on_demand`].
pub fn on_demand_for(rules: &[OnDemandRule], path: &Path) -> OnDemandAction {
    let primary = path.primary().map(|p| p.interface.kind);
    on_demand(rules, path.status == Status::Satisfied, primary)
}

/// What on-demand rules say: the first rule matching the primary interface's type;
/// `Disconnect` when none matches, or the path is not satisfied.
pub fn on_demand(
    rules: &[OnDemandRule],
    satisfied: bool,
    primary: Option<InterfaceType>,
) -> OnDemandAction {
    let Some(primary) = primary.filter(|_| satisfied) else {
        return OnDemandAction::Disconnect;
    };
    rules
        .iter()
        .find(|r| r.types().is_ok_and(|t| t.is_empty() || t.contains(&primary)))
        .map_or(OnDemandAction::Disconnect, |r| r.action)
}

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// A name that cannot be a configuration's.
    #[error(
        "{0:?} is not a configuration name (1 to 64 letters, digits, '-', '_' and '.', not starting with '.')"
    )]
    Name(String),
    /// No configuration by that name.
    #[error("no saved tunnel configuration {name:?} in {dir} (`nw tunnel list` shows them)")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The store's directory.
        dir: String,
    },
    /// A file that does not hold a configuration.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Whether `name` can name a configuration.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Configuration {
    /// Checks what serde cannot: options are an object, on-demand types are known.
    pub fn validate(&self) -> Result<(), String> {
        if let ProviderSpec::Program { options, .. } = &self.provider
            && !options.is_object()
        {
            return Err("options must be a JSON object".into());
        }
        for r in &self.on_demand {
            r.types()?;
        }
        Ok(())
    }
}

/// A configuration as listed: its name, and it or why it cannot be used.
pub type Listed = (String, Result<Configuration, ConfigurationError>);

/// The directory of saved configurations.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store at [`DIR_ENV`], or [`DEFAULT_DIR`].
    pub fn open() -> Self {
        let dir =
            std::env::var_os(DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from);
        Self { dir }
    }

    /// The store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The file of configuration `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, ConfigurationError> {
        if !valid_name(name) {
            return Err(ConfigurationError::Name(name.into()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    fn io(path: &FsPath, source: std::io::Error) -> ConfigurationError {
        ConfigurationError::Io { path: path.display().to_string(), source }
    }

    /// Saves `config` as `name`, replacing one of that name whole.
    pub fn save(&self, name: &str, config: &Configuration) -> Result<(), ConfigurationError> {
        let path = self.path(name)?;
        config
            .validate()
            .map_err(|why| ConfigurationError::Invalid { path: path.display().to_string(), why })?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Self::io(&self.dir, e))?;
        let mut text = serde_json::to_vec_pretty(config).unwrap_or_default();
        text.push(b'\n');
        let tmp = self.dir.join(format!(".{name}.json.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Self::io(&path, e)
        })
    }

    /// Loads configuration `name`.
    pub fn load(&self, name: &str) -> Result<Configuration, ConfigurationError> {
        let path = self.path(name)?;
        let text = match read_bounded(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigurationError::NotFound {
                    name: name.into(),
                    dir: self.dir.display().to_string(),
                });
            }
            Err(e) => return Err(Self::io(&path, e)),
        };
        let invalid =
            |why: String| ConfigurationError::Invalid { path: path.display().to_string(), why };
        let config: Configuration =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Every configuration, by name; one that does not load is listed with its error.
    pub fn list(&self) -> Result<Vec<Listed>, ConfigurationError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else { continue };
            if valid_name(name) {
                out.push((name.to_owned(), self.load(name)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes configuration `name`.
    pub fn remove(&self, name: &str) -> Result<(), ConfigurationError> {
        let path = self.path(name)?;
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ConfigurationError::NotFound {
                    name: name.into(),
                    dir: self.dir.display().to_string(),
                }
            } else {
                Self::io(&path, e)
            }
        })
    }

    /// Enables or disables configuration `name`.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ConfigurationError> {
        let mut c = self.load(name)?;
        c.enabled = enabled;
        self.save(name, &c)
    }
}

/// A file's text, refused past [`MAX_FILE`] and when it is not a regular file.
fn read_bounded(path: &FsPath) -> std::io::Result<String> {
    use std::io::Read as _;
    // Not following a link, and not waiting for a writer should a named pipe be found here.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a regular file of at most {MAX_FILE} bytes"),
        ));
    }
    let mut text = String::new();
    f.take(MAX_FILE).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nw-tunnel-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sample() -> Configuration {
        Configuration {
            provider: ProviderSpec::Wireguard { file: "/etc/wireguard/wg0.conf".into() },
            enabled: true,
            kill_switch: true,
            exclude_local: false,
            on_demand: vec![OnDemandRule::parse("connect=wifi,cellular").unwrap()],
        }
    }

    #[test]
    fn configurations_are_saved_listed_disabled_and_removed() {
        let d = dir("crud");
        let store = Store::at(&d);
        assert!(store.list().unwrap().is_empty(), "no directory yet: nothing saved");
        store.save("office", &sample()).unwrap();
        store
            .save(
                "lab",
                &Configuration {
                    provider: ProviderSpec::Program {
                        program: "/usr/bin/python3".into(),
                        args: vec!["p.py".into()],
                        options: serde_json::json!({"k": 1}),
                    },
                    enabled: true,
                    kill_switch: false,
                    exclude_local: true,
                    on_demand: Vec::new(),
                },
            )
            .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.path("office").unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["lab", "office"]);
        assert_eq!(store.load("office").unwrap(), sample());
        store.set_enabled("office", false).unwrap();
        assert!(!store.load("office").unwrap().enabled);
        store.remove("office").unwrap();
        assert!(matches!(store.load("office"), Err(ConfigurationError::NotFound { .. })));
        assert!(matches!(store.remove("office"), Err(ConfigurationError::NotFound { .. })));
        std::fs::write(d.join("broken.json"), "{\"provider\": 3}").unwrap();
        let listed = store.list().unwrap();
        let broken = listed.iter().find(|(n, _)| n == "broken").unwrap();
        assert!(broken.1.as_ref().unwrap_err().to_string().contains("broken.json"), "{broken:?}");
        for bad in ["", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(matches!(store.path(bad), Err(ConfigurationError::Name(_))), "{bad:?}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn on_demand_rules_read_and_decide_by_the_primary_interface() {
        assert!(OnDemandRule::parse("connect=wifi,bluetooth").unwrap_err().contains("bluetooth"));
        assert!(OnDemandRule::parse("sometimes").unwrap_err().contains("connect or disconnect"));
        let rules = vec![
            OnDemandRule::parse("disconnect=wired").unwrap(),
            OnDemandRule::parse("connect").unwrap(),
        ];
        let wired = Some(InterfaceType::Wired);
        let wifi = Some(InterfaceType::Wifi);
        assert_eq!(on_demand(&rules, true, wired), OnDemandAction::Disconnect);
        assert_eq!(on_demand(&rules, true, wifi), OnDemandAction::Connect);
        assert_eq!(on_demand(&rules, false, wifi), OnDemandAction::Disconnect, "unsatisfied");
        assert_eq!(on_demand(&rules, true, None), OnDemandAction::Disconnect);
        assert_eq!(on_demand(&[], true, wifi), OnDemandAction::Disconnect, "no rule matches");
    }
}
