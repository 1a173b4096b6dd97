//! Where anchors and chains come from: the system store (ca-certificates on Linux, through
//! rustls-native-certs) and PEM files.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use serde::Serialize;

use crate::TrustError;

/// Where an anchor comes from; the rules differ by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorClass {
    /// The operating system's store (ca-certificates on Linux).
    System,
    /// Supplied by the application for this evaluation.
    Custom,
    /// Added by the user or an administrator to the machine; follows the custom rules.
    UserAdded,
}

/// A trust anchor and its class.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// Where it comes from.
    pub class: AnchorClass,
}

/// Where Debian-family systems keep the certificates an administrator added
/// (`update-ca-certificates` merges them into the system bundle).
pub const USER_ADDED_DIR: &str = "/usr/local/share/ca-certificates";

/// The operating system's anchors: [`AnchorClass::System`], except those an administrator
/// added (found in [`USER_ADDED_DIR`]), which are [`AnchorClass::UserAdded`] and follow the
/// custom rules. Unreadable entries are skipped; a store with none at all is an error.
pub fn system() -> Result<Vec<Anchor>, TrustError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "the store is empty".to_owned(), ToString::to_string);
        return Err(TrustError::SystemAnchors(format!(
            "{why}; install ca-certificates, or give anchors explicitly"
        )));
    }
    Ok(classify(found.certs, &user_added(Path::new(USER_ADDED_DIR))))
}

/// [`system`], read once per process and shared: for default trust, which would otherwise
/// read and parse every file under `/etc/ssl/certs` for each connection, on the caller's
/// thread — an async runtime's, as often as not. Later changes to the store need a new
/// process.
pub fn system_shared() -> Result<&'static [Anchor], &'static TrustError> {
    static SYSTEM: std::sync::OnceLock<Result<Vec<Anchor>, TrustError>> =
        std::sync::OnceLock::new();
    SYSTEM.get_or_init(system).as_ref().map(Vec::as_slice)
}

/// The system store's certificates, each marked user-added when it is one of `user_added`.
pub fn classify(
    system: Vec<CertificateDer<'static>>,
    user_added: &[CertificateDer<'static>],
) -> Vec<Anchor> {
    system
        .into_iter()
        .map(|der| {
            let class = if user_added.contains(&der) {
                AnchorClass::UserAdded
            } else {
                AnchorClass::System
            };
            Anchor { der, class }
        })
        .collect()
}

/// Every certificate in `*.crt` files under `dir` (recursively); none when it is unreadable.
fn user_added(dir: &Path) -> Vec<CertificateDer<'static>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            out.extend(user_added(&path));
        } else if path.extension().is_some_and(|x| x == "crt")
            && let Ok(bytes) = std::fs::read(&path)
            && let Ok(certs) = parse_pem_certs(&bytes)
        {
            out.extend(certs);
        }
    }
    out
}

/// The most a PEM file of certificates may hold: a long chain is a few dozen KiB.
pub const PEM_FILE_LIMIT: u64 = 1 << 20;

/// Every certificate in a PEM file, in file order. A file larger than [`PEM_FILE_LIMIT`]
/// (`/dev/zero` included) is refused rather than read without bound, and so is a block that
/// is not an X.509 certificate, so an anchor that could never match is not silently kept.
pub fn load_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let file = |why: String| TrustError::File { path: path.display().to_string(), why };
    let bytes = read_limited(path, PEM_FILE_LIMIT, "PEM certificate file").map_err(file)?;
    let certs = parse_pem_certs(&bytes).map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(file("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    for (index, der) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(der) {
            return Err(file(format!(
                "certificate {index} (in file order) is not an X.509 certificate: {e}"
            )));
        }
    }
    Ok(certs)
}

/// Every certificate in PEM text.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::BadCertificate { index: 0, why: format!("bad PEM: {e}") })
}

/// A file's bytes, refusing one larger than `limit` (a device such as `/dev/zero` included)
/// instead of reading it without bound. `what` names what the file should be, for the error.
///
/// The file is opened without waiting, so a named pipe that nothing writes to is refused at
/// once ("nothing could be read from it") instead of holding the caller for ever — or being
/// taken for an empty file (no rules, no anchors); reads then wait as usual, so a pipe with a
/// writer (a shell's `<(…)`) is read whole.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |e: std::io::Error| format!("cannot read it: {e}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failed)?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on the descriptor `file` owns, which stays open across both calls.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above, with the flags just read, less O_NONBLOCK.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    match crate::files::read_at_most(file, limit) {
        Ok(bytes) if bytes.is_empty() && !regular => {
            Err("nothing could be read from it (a pipe nothing writes to?); give a file".into())
        }
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            let size = if limit.is_multiple_of(1 << 20) {
                format!("{} MiB", limit >> 20)
            } else {
                format!("{} KiB", limit / 1024)
            };
            Err(format!("it is larger than {size}, which no {what} is; is it the right file?"))
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_limited_bounds_a_device_and_does_not_wait_on_a_pipe_nobody_writes() {
        let e = read_limited(Path::new("/dev/zero"), 4096, "key").unwrap_err();
        assert!(e.contains("larger than 4 KiB, which no key is"), "{e}");
        let e = read_limited(Path::new("/dev/zero"), 1 << 20, "PAC file").unwrap_err();
        assert!(e.contains("larger than 1 MiB"), "{e}");
        let e = read_limited(Path::new("/nonexistent/x.pem"), 4096, "key").unwrap_err();
        assert!(e.starts_with("cannot read it: "), "{e}");

        let dir = std::env::temp_dir().join(format!("nw-read-limited-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success(), "mkfifo (coreutils) made the pipe");
        // Read on a thread, so that a read that waits fails the test instead of hanging it:
        // opening the pipe for writing then lets the waiting open go on.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        let reader = std::thread::spawn(move || tx.send(read_limited(&path, 4096, "key")));
        let read = rx.recv_timeout(std::time::Duration::from_secs(2));
        if read.is_err() {
            drop(std::fs::OpenOptions::new().write(true).open(&fifo));
        }
        let _ = reader.join();
        let _ = std::fs::remove_dir_all(&dir);
        let said = read.expect("nothing writes: answered at once").expect_err("refused");
        assert!(
            said.contains("nothing could be read from it (a pipe nothing writes to?)"),
            "{said}"
        );
    }
}
