//! A directory of this process's own, removed with all it holds when dropped: `nw cat -l
//! --tls`'s throwaway root, `nw doctor`'s test files, `nw condition`'s control socket, the
//! download benchmark's files.

use std::path::{Path, PathBuf};

use crate::LabError;

/// A scratch directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Makes `$TMPDIR/nw-WHAT-PID`.
    pub fn new(what: &str) -> Result<Self, LabError> {
        Self::under(&std::env::temp_dir(), what)
    }

    /// Makes `PARENT/nw-WHAT-PID` (a parent on disk, say, where `$TMPDIR` may be memory).
    pub fn under(parent: &Path, what: &str) -> Result<Self, LabError> {
        let dir = parent.join(format!("nw-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot make {}: {e}", dir.display()))
        })?;
        Ok(Self(dir))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
