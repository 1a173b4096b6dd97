//! The permission store and the administrator's policy: two small TOML files, and the
//! decision they give for an identity.
//!
//! # Files
//!
//! The **store** (`/var/lib/nwkit/lnp.toml`, or `NW_LNP_STORE`) is written by `nw lnp` and by
//! answered prompts:
//!
//! ```toml
//! check = "on"              # "on" or "off": the check for the whole host
//! headless = "deny"         # what an undecided app gets when nobody answers a prompt
//! prompt = ["/usr/local/bin/ask-lnp"]   # the prompt hook (see below)
//!
//! [apps]
//! "exe:/usr/bin/curl" = "allow"        # "allow", "deny" or "ask"
//! "unit:printer-sync.service" = "deny"
//! ```
//!
//! The **policy** (`/etc/nwkit/lnp.toml`, or `NW_LNP_POLICY`) is the administrator's, read
//! only: `check`, `headless` and `prompt` as above, which override the store's, `allow` and
//! `deny` lists of identities, which come before any decision in the store, and
//! `system_services = "check"`, which holds the host's own services to the check like any app
//! (by default they are exempt: see below).
//!
//! A missing file is an empty one. A file that does not parse is an error, never "allow all":
//! connections to local destinations fail with that error until the file is fixed.
//!
//! # The decision, in order
//!
//! 1. The check is off (the policy's `check`, else the store's, else off: a host where nobody
//!    turned it on): allowed.
//! 2. The policy's `deny`, then its `allow` list.
//! 3. The store's entry for the identity.
//! 4. No entry, and the app is one of the host's own services — a `unit:` identity whose
//!    process runs under systemd's `/system.slice/` (NetworkManager and its DHCP client,
//!    systemd-networkd, avahi, chronyd …): allowed, unless the policy says
//!    `system_services = "check"`. macOS exempts its launchd daemons the same way (Apple's
//!    TN3179, "macOS considerations"); without it, turning the check on under `nw filter up
//!    --local-network` would deny a headless host's DHCP renewals and break its network.
//!    User services (`user@UID.service`) and everything else are held to the check.
//! 5. Otherwise: ask. The prompt hook, when there is one, is run with `NW_LNP_IDENTITY`,
//!    `NW_LNP_DESTINATION`, `NW_LNP_DIRECTION` (`outbound`, or `inbound` when the destination is
//!    a peer that reached one of the app's listeners), `NW_LNP_EXECUTABLE` and `NW_LNP_PID` in
//!    its environment; exit status
//!    0 allows and 1 denies, and the answer is stored. Any other status, no answer within
//!    [`PROMPT_TIMEOUT`], or no hook: the `headless` answer (deny unless set), not stored.
//!
//! # Concurrent writers
//!
//! Every change takes an exclusive `flock` on `STORE.lock`, reads the store afresh, applies the
//! change, writes a temporary file in the same directory, syncs it and renames it over the
//! store. Readers never lock: they see the old file or the new one, never a torn one. Comments
//! written by hand are not kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a prompt hook may take before the headless answer applies.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Files larger than this are refused rather than read.
const MAX_FILE: u64 = 4 << 20;

/// What an app may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Reach the local network.
    Allow,
    /// Never reach it.
    Deny,
    /// Ask (the prompt hook, or the headless answer).
    Ask,
}

impl Access {
    /// The word in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }
}

/// An answer without asking: allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl Answer {
    /// The word in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The check for the whole host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Apps need permission to reach the local network.
    On,
    /// Everything reaches it.
    Off,
}

/// The store file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// The check for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// What an undecided app gets when nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<Answer>,
    /// The prompt hook: a command and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<String>>,
    /// The decision per identity.
    #[serde(default)]
    pub apps: BTreeMap<String, Access>,
}

/// The administrator's policy file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Overrides the store's check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// Overrides the store's headless answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<Answer>,
    /// Overrides the store's prompt hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<String>>,
    /// Identities allowed whatever the store says.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Identities denied whatever the store says.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Whether the host's own services are exempt (the default) or held to the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_services: Option<SystemServices>,
}

/// What the host's own services (systemd system units) get when nothing is decided for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemServices {
    /// Allowed, as macOS allows its launchd daemons: the default.
    Exempt,
    /// Asked about like any app.
    Check,
}

/// Where the files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The permission store.
    pub store: PathBuf,
    /// The administrator's policy.
    pub policy: PathBuf,
}

impl Paths {
    /// The default store.
    pub const STORE: &str = "/var/lib/nwkit/lnp.toml";
    /// The default policy.
    pub const POLICY: &str = "/etc/nwkit/lnp.toml";

    /// From `NW_LNP_STORE` and `NW_LNP_POLICY`, else the defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Self { store: var("NW_LNP_STORE", Self::STORE), policy: var("NW_LNP_POLICY", Self::POLICY) }
    }

    /// The denial log, beside the store (`lnp.log`).
    pub fn log(&self) -> PathBuf {
        self.store.with_extension("log")
    }

    fn lock(&self) -> PathBuf {
        let mut name = self.store.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.store.with_file_name(name)
    }
}

/// Why the store or the policy could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A file does not parse.
    #[error(
        "{path} does not parse, so local network permissions cannot be decided: {why}; fix or remove the file"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file is implausibly large.
    #[error("{path} is larger than {} KiB; is it the right file?", MAX_FILE / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The policy lists an identity as both allowed and denied.
    #[error("{path}: {identity} is in both allow and deny; keep one")]
    Contradiction {
        /// The policy file.
        path: PathBuf,
        /// The identity.
        identity: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io { path: path.to_path_buf(), error }
}

/// Reads a TOML file; a missing one is the default. Only a regular file is read: a named pipe
/// would hold the open for ever, and a device (`NW_LNP_STORE=/dev/null`) would be replaced by
/// the store's next write — as root, the device node itself.
fn read<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, StoreError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt as _;
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(io_error(path)(e)),
    };
    if !file.metadata().map_err(io_error(path))?.is_file() {
        return Err(io_error(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a device, a pipe or a directory); name a file",
        )));
    }
    let mut text = String::new();
    let read = file.take(MAX_FILE + 1).read_to_string(&mut text);
    match read {
        Ok(n) if n as u64 > MAX_FILE => Err(StoreError::TooLarge { path: path.to_path_buf() }),
        Ok(_) => toml::from_str(&text).map_err(|e| StoreError::Parse {
            path: path.to_path_buf(),
            why: e.to_string().trim().replace('\n', " "),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(StoreError::Parse { path: path.to_path_buf(), why: "it is not UTF-8 text".into() })
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Where a setting or decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The administrator's policy.
    Policy,
    /// The permission store.
    Store,
    /// Neither says: the built-in default.
    Default,
    /// The prompt hook answered.
    Prompt,
    /// The app is one of the host's own services, exempt from the check.
    System,
}

/// What the files decide for one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow, deny, or ask.
    pub access: Access,
    /// Which file decided (`default`: the check is off by default, or nothing is stored).
    pub by: Source,
    /// Whether the check is on at all (when off, `access` is allow).
    pub check: bool,
}

/// Both files, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where they are.
    pub paths: Paths,
    /// The store.
    pub store: StoreFile,
    /// The administrator's policy.
    pub admin: PolicyFile,
}

impl Policy {
    /// Reads both files.
    pub fn load(paths: &Paths) -> Result<Self, StoreError> {
        let store: StoreFile = read(&paths.store)?;
        let admin: PolicyFile = read(&paths.policy)?;
        if let Some(both) = admin.allow.iter().find(|a| admin.deny.contains(a)) {
            return Err(StoreError::Contradiction {
                path: paths.policy.clone(),
                identity: both.clone(),
            });
        }
        Ok(Self { paths: paths.clone(), store, admin })
    }

    /// Whether the check is on, and which file says so.
    pub fn check(&self) -> (bool, Source) {
        match (self.admin.check, self.store.check) {
            (Some(c), _) => (c == Check::On, Source::Policy),
            (None, Some(c)) => (c == Check::On, Source::Store),
            (None, None) => (false, Source::Default),
        }
    }

    /// The headless answer, and which file says so.
    pub fn headless(&self) -> (Answer, Source) {
        match (self.admin.headless, self.store.headless) {
            (Some(a), _) => (a, Source::Policy),
            (None, Some(a)) => (a, Source::Store),
            (None, None) => (Answer::Deny, Source::Default),
        }
    }

    /// The prompt hook, if any.
    pub fn prompt(&self) -> Option<&[String]> {
        self.admin.prompt.as_deref().or(self.store.prompt.as_deref()).filter(|p| !p.is_empty())
    }

    /// Whether the host's own services are exempt, and which file says so.
    pub fn system_services(&self) -> (SystemServices, Source) {
        match self.admin.system_services {
            Some(s) => (s, Source::Policy),
            None => (SystemServices::Exempt, Source::Default),
        }
    }

    /// What the files decide for the app `who` (see the [module docs](self) for the order,
    /// which includes the exemption of an undecided system service unless the policy holds
    /// those to the check).
    pub fn decide_for(&self, who: &crate::Identified) -> Decision {
        let decision = self.decide(&who.identity);
        let exempt = self.system_services().0 == SystemServices::Exempt;
        if decision.access == Access::Ask
            && exempt
            && crate::identity::is_system_service(&who.identity, &who.cgroup)
        {
            return Decision { access: Access::Allow, by: Source::System, check: decision.check };
        }
        decision
    }

    /// What the files decide for `identity` (see the [module docs](self) for the order), the
    /// system-service exemption aside (it needs the process's cgroup): callers outside this
    /// crate ask [`decide_for`](Self::decide_for), which cannot forget it.
    pub(crate) fn decide(&self, identity: &str) -> Decision {
        let (check, by) = self.check();
        if !check {
            return Decision { access: Access::Allow, by, check };
        }
        let listed = |list: &[String]| list.iter().any(|i| i == identity);
        let (access, by) = if listed(&self.admin.deny) {
            (Access::Deny, Source::Policy)
        } else if listed(&self.admin.allow) {
            (Access::Allow, Source::Policy)
        } else if let Some(a) = self.store.apps.get(identity) {
            (*a, Source::Store)
        } else {
            (Access::Ask, Source::Default)
        };
        Decision { access, by, check }
    }
}

/// Changes the store under its lock (see the [module docs](self)): reads it afresh, applies
/// `change`, and replaces the file. A store that does not parse is left as it is and reported.
pub fn update<R>(paths: &Paths, change: impl FnOnce(&mut StoreFile) -> R) -> Result<R, StoreError> {
    let store = &paths.store;
    let dir = match store.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let lock_path = paths.lock();
    let lock = no_follow()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    flock(&lock).map_err(io_error(&lock_path))?;
    let mut file: StoreFile = read(store)?;
    let out = change(&mut file);
    let text = render(&file);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        store.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        // A stale temporary file (a crash) or a planted link (a shared directory) is removed,
        // never written through: the new one is created exclusively.
        let _ = std::fs::remove_file(&tmp);
        let mut f = no_follow().create_new(true).write(true).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, store)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(store)(e));
    }
    drop(lock); // the lock goes with the descriptor
    Ok(out)
}

/// Options that refuse to open a symbolic link (`O_NOFOLLOW`): in a directory others may
/// write, a planted link must not make root write where it points.
pub(crate) fn no_follow() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    o
}

/// An exclusive `flock`, waiting for it.
fn flock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A TOML string (JSON's escapes are TOML basic-string escapes).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The store as TOML, in a fixed order.
fn render(file: &StoreFile) -> String {
    let mut out = String::from(
        "# nwkit local network privacy: which apps may reach the local network.\n# Written by `nw lnp`; see `nw lnp --help`. Comments are not kept.\n",
    );
    if let Some(c) = file.check {
        out += &format!("check = {}\n", quote(if c == Check::On { "on" } else { "off" }));
    }
    if let Some(h) = file.headless {
        out += &format!("headless = {}\n", quote(h.as_str()));
    }
    if let Some(p) = &file.prompt {
        let words: Vec<String> = p.iter().map(|w| quote(w)).collect();
        out += &format!("prompt = [{}]\n", words.join(", "));
    }
    out += "\n[apps]\n";
    for (identity, access) in &file.apps {
        out += &format!("{} = {}\n", quote(identity), quote(access.as_str()));
    }
    out
}

#[cfg(test)]
mod tests;
