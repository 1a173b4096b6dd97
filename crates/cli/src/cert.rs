//! `nw cert`: a private test CA and the server and client certificates it issues — the
//! "creating certificates for TLS testing" workflow without self-signed certificates.
//! Files are PEM; keys are written readable by their owner only; nothing is overwritten
//! without `--force`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nw_trust::ca::{KeyKind, Profile, TestCa};

use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
    /// The directory to write to, and where `server` and `client` find the CA.
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Replace files that exist.
    #[arg(long, global = true)]
    force: bool,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// A new root CA: DIR/ca.pem (give it to clients as an anchor) and DIR/ca-key.pem.
    Ca {
        /// Its common name.
        #[arg(long, default_value = "nwkit test CA")]
        name: String,
        /// Days of validity.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
    /// A TLS server certificate for NAME… (DNS names or IP addresses, all in the SAN), issued
    /// by DIR's CA: DIR/NAME.pem and DIR/NAME-key.pem.
    Server {
        /// The names it is for: DNS names (`www.example.test`, `*.example.test`) and IP
        /// addresses, all in its subject alternative names; the first also names the files.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Days of validity (90: within every anchor class's limit).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
        /// An RSA 2048 key instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
    },
    /// A TLS client certificate (mutual TLS) for NAME, issued by DIR's CA.
    Client {
        /// The client's name (its common name, and the files' name).
        #[arg(value_name = "NAME")]
        name: String,
        /// Days of validity (90: within every anchor class's limit).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
        /// An RSA 2048 key instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(UsageError(format!(
                "--dir {}: not a directory; give a directory (a new one is made for `ca`)",
                dir.display()
            ))
            .into());
        }
        // A new CA gets a new directory, its owner's only (it holds the CA's key).
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && matches!(args.what, What::Ca { .. }) =>
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| anyhow::anyhow!("cannot make the directory {}: {e}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UsageError(format!(
                "--dir {}: no such directory, so no CA in it; make one first with `nw cert ca --dir {}`",
                dir.display(),
                dir.display()
            ))
            .into());
        }
        // A path through a file (`--dir notes.txt/pki`): the command line's mistake too.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(UsageError(format!(
                "--dir {}: a part of it is a file, not a directory; give a directory",
                dir.display()
            ))
            .into());
        }
        Err(e) => return Err(anyhow::anyhow!("--dir {}: {e}", dir.display())),
    }
    let written = match &args.what {
        What::Ca { name, days } => {
            let ca = TestCa::root(name, crate::trust::now() - 3600, *days)?;
            vec![
                write(&dir.join("ca.pem"), ca.cert_pem(), false, args.force)?,
                write(&dir.join("ca-key.pem"), ca.key_pem(), true, args.force)?,
            ]
        }
        What::Server { names, days, rsa } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let profile = Profile { days: *days, key: key(*rsa), ..Profile::default() };
            issue(dir, &names, &profile, args.force)?
        }
        What::Client { name, days, rsa } => {
            let profile = Profile {
                days: *days,
                key: key(*rsa),
                server_auth: false,
                client_auth: true,
                ..Profile::default()
            };
            issue(dir, &[name.as_str()], &profile, args.force)?
        }
    };
    for path in written {
        let _ = crate::output::line(&path.display().to_string());
    }
    Ok(Outcome::Success)
}

fn key(rsa: bool) -> KeyKind {
    if rsa { KeyKind::Rsa2048 } else { KeyKind::EcP256 }
}

/// Issues from DIR's CA and writes the chain (leaf, then the CAs below the root) and the key.
fn issue(
    dir: &Path,
    names: &[&str],
    profile: &Profile,
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| {
            UsageError(format!(
                "{}: {e}; make a CA first with `nw cert ca --dir {}`",
                dir.join(file).display(),
                dir.display()
            ))
        })
    };
    let ca = TestCa::from_pem(&read("ca.pem")?, &read("ca-key.pem")?)
        .map_err(|e| UsageError(format!("the CA in {}: {e}", dir.display())))?;
    let issued = ca.issue(names, profile).map_err(|e| UsageError(e.to_string()))?;
    // The root stays out of the chain a peer presents; relying parties hold it as an anchor.
    let leaf_pem =
        issued.chain_pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap_or_default();
    let stem = file_stem(names.first().copied().unwrap_or("cert"));
    Ok(vec![
        write(&dir.join(format!("{stem}.pem")), leaf_pem, false, force)?,
        write(&dir.join(format!("{stem}-key.pem")), &issued.key_pem, true, force)?,
    ])
}

/// A file name from a certificate name: `*.example` → `wildcard.example`, `::1` → `__1`.
fn file_stem(name: &str) -> String {
    name.replace('*', "wildcard")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect()
}

fn write(path: &Path, text: &str, secret: bool, force: bool) -> anyhow::Result<PathBuf> {
    let mode = if secret { 0o600 } else { 0o644 };
    let exists = |what: &str| anyhow::Error::new(UsageError(format!("{} {what}", path.display())));
    match std::fs::symlink_metadata(path) {
        Err(_) => {}
        Ok(_) if !force => return Err(exists("exists; pass --force to replace it")),
        Ok(m) if !(m.is_file() || m.file_type().is_symlink()) => {
            return Err(exists(
                "is not a regular file (a directory, a device or a pipe); choose another --dir",
            ));
        }
        // Replaced whole, as a new file with its own mode: never written through a link
        // (root following a planted one), and a key never lands in an older file that
        // others may read.
        Ok(_) => {
            nw_trust::files::replace(path, text.as_bytes(), mode)
                .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
            return Ok(path.to_owned());
        }
    }
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(
            |e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists("exists; pass --force to replace it")
                } else {
                    anyhow::anyhow!("cannot write {}: {e}", path.display())
                }
            },
        )?;
    file.write_all(text.as_bytes())?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_stems_are_safe() {
        assert_eq!(super::file_stem("*.example"), "wildcard.example");
        assert_eq!(super::file_stem("::1"), "__1");
        assert_eq!(super::file_stem("../etc/passwd"), ".._etc_passwd");
    }
}
