//! Saved tunnels started at boot, by systemd: one template unit, `nw-tunnel@.service`, that
//! runs `nw tunnel up NAME`, and one link per configuration in `multi-user.target.wants` —
//! what `systemctl enable nw-tunnel@NAME` makes, made here without asking systemd (so it
//! works in an image being built, or where systemd does not run), then `systemctl
//! daemon-reload` when systemd does run.
//!
//! The unit's choices: SIGTERM to `nw` alone (`KillMode=mixed`), which stops its provider in
//! order and removes everything (the kill switch too: an orderly stop); a host that fails is
//! started again (`Restart=on-failure`, 5 s apart), but not one refused for
//! its usage (exit 2: a configuration removed, disabled or broken); ordered after
//! `network-pre.target` and before `network.target`, so the kill switch can be in force
//! before other services reach the network (on-demand rules wait for the path themselves).

use std::io;
use std::path::{Path, PathBuf};

/// The template's file name.
pub(super) const TEMPLATE: &str = "nw-tunnel@.service";
/// What wants the tunnels started at boot.
const WANTED_BY: &str = "multi-user.target";

/// Where units are written: /etc/systemd/system, or `NW_SYSTEMD_DIR`.
pub(super) fn unit_dir() -> PathBuf {
    std::env::var_os("NW_SYSTEMD_DIR")
        .map_or_else(|| PathBuf::from("/etc/systemd/system"), PathBuf::from)
}

/// The link that starts `name` at boot.
fn link(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{WANTED_BY}.wants")).join(format!("nw-tunnel@{name}.service"))
}

/// `program` as one word of an `ExecStart=` line: `%` doubled (a specifier otherwise), quoted
/// when it holds a space; `None` for what a unit cannot hold.
fn exec_word(program: &Path) -> Option<String> {
    let text = program.to_str()?;
    if !program.is_absolute() || text.contains(['"', '\\', '\n', '\r', '\'']) {
        return None;
    }
    let text = text.replace('%', "%%");
    Some(if text.contains(' ') { format!("\"{text}\"") } else { text })
}

/// The template unit for `nw` at `program`.
pub(super) fn template(program: &Path) -> io::Result<String> {
    let exec = exec_word(program).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} cannot be named in a systemd unit (it must be an absolute path without quotes or backslashes)",
                program.display()
            ),
        )
    })?;
    Ok(format!(
        "# Written by `nw tunnel enable NAME --at-boot`, which links nw-tunnel@NAME.service into
# {WANTED_BY}.wants; `nw tunnel disable NAME` and `nw tunnel remove NAME` unlink it.
[Unit]
Description=nw packet tunnel %i
Wants=network-pre.target
After=network-pre.target
Before=network.target

[Service]
Type=simple
ExecStart={exec} tunnel up %i
# SIGTERM to nw alone: it stops the provider in order and removes what it set up.
KillMode=mixed
TimeoutStopSec=30s
Restart=on-failure
RestartSec=5s
# Exit 2: the configuration was removed, disabled or cannot be used; starting again will not help.
RestartPreventExitStatus=2

[Install]
WantedBy={WANTED_BY}
"
    ))
}

/// What enabling at boot did.
pub(super) struct Enabled {
    /// The link made (or found).
    pub(super) link: PathBuf,
    /// The template was written (it was missing, or named another nw).
    pub(super) wrote_template: bool,
}

/// Writes the template when it is missing or names another `nw`, and links `name` in.
/// Blocking.
pub(super) fn enable(name: &str, program: &Path) -> io::Result<Enabled> {
    let dir = unit_dir();
    let path = dir.join(TEMPLATE);
    let text = template(program)?;
    let wrote_template = std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
    if wrote_template {
        std::fs::create_dir_all(&dir)?;
        nw_trust::files::replace(&path, text.as_bytes(), 0o644)?;
    }
    let link = link(&dir, name);
    if let Some(wants) = link.parent() {
        std::fs::create_dir_all(wants)?;
    }
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a link; nw leaves it alone", link.display()),
            ));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(Path::new("..").join(TEMPLATE), &link)?;
    reload();
    Ok(Enabled { link, wrote_template })
}

/// Unlinks `name`; returns whether it was linked. Blocking.
pub(super) fn disable(name: &str) -> io::Result<bool> {
    let link = link(&unit_dir(), name);
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(&link)?;
            reload();
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Whether `name` starts at boot.
pub(super) fn at_boot(name: &str) -> bool {
    std::fs::symlink_metadata(link(&unit_dir(), name)).is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether systemd runs this machine (sd_booted(3)'s test).
pub(super) fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Tells a running systemd that units changed; says so when it could not.
fn reload() {
    if !systemd_runs() || std::env::var_os("NW_SYSTEMD_DIR").is_some() {
        return;
    }
    if let Err(e) = nw_provider::tool("systemctl", &["daemon-reload"], None, "systemd") {
        tracing::warn!("systemctl daemon-reload: {e}; run it before starting the unit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_named_as_systemd_reads_them() {
        assert_eq!(exec_word(Path::new("/usr/bin/nw")).as_deref(), Some("/usr/bin/nw"));
        assert_eq!(exec_word(Path::new("/opt/my nw/nw")).as_deref(), Some("\"/opt/my nw/nw\""));
        assert_eq!(exec_word(Path::new("/opt/100%/nw")).as_deref(), Some("/opt/100%%/nw"));
        assert_eq!(exec_word(Path::new("nw")), None, "relative");
        assert_eq!(exec_word(Path::new("/opt/a\"b/nw")), None);
        assert!(template(Path::new("/opt/a\\b")).is_err());
    }
}
