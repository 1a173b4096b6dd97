//! Files nwkit keeps (the CT log list here, the cookie jar in nw-http): written whole or not
//! at all, never through a link; and files a user names, opened without waiting on them.

use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Replaces `path` with `bytes`: a new file beside it (created, never opened through a link
/// someone planted at its name), with `mode`, synced, then renamed over `path`. On any error the
/// new file is removed and `path` is as it was.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Opens a file a user named, for reading, with its metadata: never waiting (a named pipe
/// nothing writes to would hold a plain open for ever), not through a link unless `follow`,
/// and only a regular file — anything else (a directory, a pipe, a device) is an
/// `InvalidInput` error that says so. Reads from the regular file it returns never wait.
pub fn open_regular(path: &Path, follow: bool) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    let flags = if follow { libc::O_NONBLOCK } else { libc::O_NONBLOCK | libc::O_NOFOLLOW };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a directory, a pipe or a device)",
        ));
    }
    Ok((file, meta))
}

/// Reads a file a user named, whole, with its metadata: [`open_regular`]'s rules, and at most
/// `limit` bytes — a larger file is a `FileTooLarge` error (its caller says what it expected).
pub fn read_regular(
    path: &Path,
    follow: bool,
    limit: u64,
) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
    let (file, meta) = open_regular(path, follow)?;
    Ok((read_at_most(file, limit)?, meta))
}

/// All of `from`, when it is at most `limit` bytes; more is a `FileTooLarge` error, found by
/// reading one byte past the limit, never the rest.
pub(crate) fn read_at_most(from: impl io::Read, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    from.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn only_a_regular_file_is_opened_and_a_pipe_is_not_waited_on() {
        let dir = std::env::temp_dir().join(format!("nw-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("file");
        std::fs::write(&file, b"text").unwrap_or_else(|e| panic!("{e}"));
        let (_, meta) = open_regular(&file, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.len(), 4);
        let (bytes, _) = read_regular(&file, false, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes, b"text");
        let big = read_regular(&file, false, 3).err().map(|e| e.kind());
        assert_eq!(big, Some(io::ErrorKind::FileTooLarge));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap_or_else(|e| panic!("{e}"));
        assert!(open_regular(&link, false).is_err(), "a link is not followed");
        assert!(open_regular(&link, true).is_ok(), "unless asked");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: mkfifo(3) on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for other in [&fifo, &dir] {
            let e = open_regular(other, true).err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::InvalidInput), "{}", other.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_a_planted_link_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("nw-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("list.json");
        std::fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));
        replace(&path, b"new", 0o600).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"new");
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o600);

        // A link at the temporary name: the write fails, the target and the file are untouched.
        let target = dir.join("target");
        std::fs::write(&target, b"precious").unwrap_or_else(|e| panic!("{e}"));
        let planted = dir.join(format!("list.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&target, &planted).unwrap_or_else(|e| panic!("{e}"));
        assert!(replace(&path, b"newer", 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap_or_default(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"new");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
