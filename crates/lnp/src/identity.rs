//! Stable identities: what an app is called in the permission store, chosen so that it
//! survives updates of the app and never depends on who started it.
//!
//! # The rule
//!
//! From the strongest evidence there is, in this order:
//!
//! 1. `flatpak:ID` — the Flatpak application id, from the process's cgroup
//!    (`app-flatpak-ID-N.scope`);
//! 2. `snap:NAME.APP` — the snap and its app, from the cgroup (`snap.NAME.APP-….scope` or
//!    `.service`);
//! 3. `unit:NAME.service` — the systemd system or user service the process runs in (not
//!    `user@UID.service` itself, and not session or desktop scopes, which hold unrelated apps);
//! 4. `script:PATH` — a script run by an interpreter (python, perl, ruby, node, sh, bash, …):
//!    the script's absolute path, so two Python programs are two apps;
//! 5. `exe:PATH` — the executable's path.
//!
//! Never a hash of the binary: replacing the executable (a package upgrade, a rebuilt binary
//! at the same path) keeps the identity, and so the permission. The owning package (Debian's
//! `dpkg -S`) is shown beside an `exe:` identity but is not part of it: dpkg lets one path
//! belong to one package at a time, so the path already names it, and it keeps naming it when
//! the package is renamed.
//!
//! **Responsible process.** A process is judged by what it runs itself, never by its parent:
//! a program started by a shell wrapper, a launcher, an IDE or a debugger (`gdb --args`,
//! `strace -f`) is judged as that program. A wrapper that `exec`s becomes the program; one that
//! stays behind as the parent is a separate app (`script:` the wrapper) and needs no
//! permission unless it reaches the network itself.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What identification reads about a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The executable as the kernel has it (`/proc/PID/exe`; ` (deleted)` when replaced).
    pub executable: &'a str,
    /// The cgroup v2 path (`/system.slice/nginx.service`).
    pub cgroup: &'a str,
    /// The command line.
    pub command_line: &'a [String],
    /// The working directory, to make a relative script path absolute.
    pub cwd: Option<&'a str>,
}

/// The kinds of identity, each followed by a name.
pub const KINDS: [&str; 5] = ["flatpak:", "snap:", "unit:", "script:", "exe:"];

/// What makes a text no identity that a process could have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// It starts with none of [`KINDS`], or nothing follows the kind.
    NoKind,
    /// An `exe:` or `script:` whose path is not absolute: identities name programs by their
    /// absolute path, so it would match no process.
    Relative {
        /// `exe:` or `script:`.
        kind: &'static str,
        /// The path given.
        path: String,
    },
}

/// What is wrong with `id` as an identity, if anything.
pub fn malformed(id: &str) -> Option<Malformed> {
    for kind in ["exe:", "script:"] {
        if let Some(path) = id.strip_prefix(kind).filter(|p| !p.is_empty() && !p.starts_with('/')) {
            return Some(Malformed::Relative { kind, path: path.to_owned() });
        }
    }
    let named = KINDS.iter().any(|k| id.strip_prefix(k).is_some_and(|rest| !rest.is_empty()));
    (!named).then_some(Malformed::NoKind)
}

/// The identity for a process with these facts. See the [module docs](self) for the rule.
pub fn identify(facts: &Facts<'_>) -> String {
    for part in facts.cgroup.rsplit('/') {
        // Flatpak: app-flatpak-org.example.App-1234.scope
        if let Some(rest) = part.strip_prefix("app-flatpak-")
            && let Some(id) = rest.strip_suffix(".scope").and_then(|r| r.rsplit_once('-'))
        {
            return format!("flatpak:{}", id.0);
        }
        // snap: snap.firefox.firefox-<uuid>.scope (or snap.NAME.APP.service)
        if let Some(rest) = part.strip_prefix("snap.") {
            let mut it = rest.splitn(3, '.');
            if let (Some(name), Some(app)) = (it.next(), it.next()) {
                let app = app.split('-').next().unwrap_or(app);
                return format!("snap:{name}.{app}");
            }
        }
        if part.ends_with(".service") && !part.starts_with("user@") {
            return format!("unit:{part}");
        }
    }
    let exe = executable(facts.executable);
    if let Some(script) = script(exe, facts.command_line, facts.cwd) {
        return format!("script:{}", script.display());
    }
    format!("exe:{exe}")
}

/// The executable's path without the kernel's ` (deleted)` mark.
fn executable(exe: &str) -> &str {
    exe.strip_suffix(" (deleted)").unwrap_or(exe)
}

/// Whether `identity` (with the cgroup it was found in) is one of the host's own services: a
/// `unit:` identity in systemd's system slice, not a user's service manager or session.
pub fn is_system_service(identity: &str, cgroup: &str) -> bool {
    identity.starts_with("unit:") && cgroup.starts_with("/system.slice/")
}

/// Whether an executable is an interpreter that runs a script named on its command line.
pub fn is_interpreter(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    let stem = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    matches!(
        stem,
        "python"
            | "perl"
            | "ruby"
            | "node"
            | "nodejs"
            | "sh"
            | "bash"
            | "dash"
            | "zsh"
            | "ksh"
            | "mksh"
            | "fish"
            | "php"
            | "lua"
            | "luajit"
            | "tclsh"
            | "Rscript"
    )
}

/// The script an interpreter runs: its first operand, made absolute against `cwd`. `None` when
/// `exe` is no interpreter, or the code comes from the command line (`-c`, `-e`), a module
/// (`-m`), standard input or a descriptor (`/dev/fd/N`, `/proc/self/fd/N`). `command_line`
/// starts with the program, as `/proc/PID/cmdline` does.
pub fn script(exe: &str, command_line: &[String], cwd: Option<&str>) -> Option<PathBuf> {
    if !is_interpreter(exe) {
        return None;
    }
    // Options that take the next argument as their value, and options that mean "no script".
    const VALUE: [&str; 7] = ["-W", "-X", "-o", "-O", "-I", "--rcfile", "--init-file"];
    const INLINE: [&str; 5] = ["-c", "-m", "-e", "--eval", "-"];
    let mut args = command_line.iter().skip(1);
    while let Some(arg) = args.next() {
        if INLINE.contains(&arg.as_str()) {
            return None;
        }
        if VALUE.contains(&arg.as_str()) {
            args.next();
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        let path = Path::new(arg);
        let path = match cwd {
            _ if path.is_absolute() => path.to_path_buf(),
            Some(cwd) => Path::new(cwd).join(path),
            None => path.to_path_buf(),
        };
        let path = normalize(&path);
        // A pipe or descriptor (`bash <(…)`, `/dev/fd/3`) is no file that names an app.
        if path.starts_with("/dev") || path.starts_with("/proc") {
            return None;
        }
        return Some(path);
    }
    None
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A process or an executable, identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identified {
    /// The identity the permission store keys on.
    pub identity: String,
    /// The process id, when a process was identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The executable's path.
    pub executable: String,
    /// The command line (a process's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command_line: Vec<String>,
    /// The cgroup (a process's).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup: String,
    /// The working directory (a process's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl Identified {
    /// Identifies the facts given.
    pub fn from_facts(pid: Option<u32>, facts: &Facts<'_>) -> Self {
        Self {
            identity: identify(facts),
            pid,
            executable: facts.executable.to_owned(),
            command_line: facts.command_line.to_vec(),
            cgroup: facts.cgroup.to_owned(),
            cwd: facts.cwd.map(str::to_owned),
        }
    }
}

/// Identifies a running process from procfs. `None` when it is gone.
pub fn of_process(pid: u32) -> Option<Identified> {
    let base = Path::new("/proc").join(pid.to_string());
    // Another user's executable is unreadable to someone other than root: an empty path.
    let executable = std::fs::read_link(base.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let command_line: Vec<String> = std::fs::read(base.join("cmdline"))
        .ok()?
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cgroup = std::fs::read_to_string(base.join("cgroup"))
        .ok()
        .map(|t| cgroup_of(&t))
        .unwrap_or_default();
    let cwd = std::fs::read_link(base.join("cwd")).ok().map(|p| p.to_string_lossy().into_owned());
    let facts = Facts {
        executable: &executable,
        cgroup: &cgroup,
        command_line: &command_line,
        cwd: cwd.as_deref(),
    };
    Some(Identified::from_facts(Some(pid), &facts))
}

/// The cgroup v2 path in `/proc/PID/cgroup`'s text (`0::/path`), or on a hybrid host without
/// it, systemd's named hierarchy (`1:name=systemd:/path`).
pub fn cgroup_of(text: &str) -> String {
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
    let named = || text.lines().find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p));
    v2.filter(|p| *p != "/").or_else(named).or(v2).unwrap_or_default().to_owned()
}

/// This process, identified (read once).
pub fn of_self() -> &'static Identified {
    static SELF: std::sync::OnceLock<Identified> = std::sync::OnceLock::new();
    SELF.get_or_init(|| {
        of_process(std::process::id()).unwrap_or_else(|| {
            let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
            Identified::from_facts(None, &Facts { executable: &exe, ..Facts::default() })
        })
    })
}

/// The identity an executable gets when it runs outside any service, Flatpak or snap: its
/// real path (symbolic links resolved, as the kernel shows a running one), or for a script
/// with an interpreter's `#!` line, the script's. Errors when the file cannot be read.
pub fn of_executable(path: &Path) -> std::io::Result<Identified> {
    let real = std::fs::canonicalize(path)?;
    let shown = real.display().to_string();
    let interpreter = shebang(&real)?;
    let identity = match interpreter {
        Some(i) if is_interpreter(&i) => format!("script:{shown}"),
        _ => format!("exe:{shown}"),
    };
    Ok(Identified {
        identity,
        pid: None,
        executable: shown,
        command_line: Vec::new(),
        cgroup: String::new(),
        cwd: None,
    })
}

/// The interpreter a `#!` line names (`/usr/bin/env python3` gives `python3`).
fn shebang(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(path)?;
    let n = file.read(&mut head)?;
    let head = &head[..n];
    let Some(line) = head.strip_prefix(b"#!") else { return Ok(None) };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    let program = if first.ends_with("/env") {
        words.find(|w| !w.starts_with('-')).unwrap_or_default()
    } else {
        first
    };
    Ok(Some(program.to_owned()))
}

/// The Debian package that owns `path`, from `dpkg-query -S` (for people; not part of the
/// identity). `None` when there is none or dpkg is not installed.
pub fn package_of(path: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query").arg("-S").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "curl: /usr/bin/curl", or "diversion by …" lines, which are skipped.
    text.lines()
        .filter(|l| !l.starts_with("diversion"))
        .find_map(|l| l.split_once(": ").map(|(p, _)| p.to_owned()))
}

#[cfg(test)]
mod tests;
