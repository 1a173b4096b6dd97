//! A scratch directory for the crate's tests: unique to the process and a tag, removed on
//! drop, with a store and a policy path inside.

use std::path::PathBuf;

use crate::store::Paths;

pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nw-lnp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Self(dir)
    }

    /// `lnp.toml` and `policy.toml` in it.
    pub(crate) fn paths(&self) -> Paths {
        Paths { store: self.0.join("lnp.toml"), policy: self.0.join("policy.toml") }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
