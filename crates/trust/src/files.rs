//! Files nwkit keeps (the CT log list here, the cookie jar in nw-transfer): written whole or not
//! at all, never through a link.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

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
