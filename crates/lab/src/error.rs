use std::process::ExitStatus;

/// What went wrong setting up or driving the lab. Each message says what to try.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Not root.
    #[error(
        "the lab needs root (network namespaces, veth, nftables); run the tests as root, e.g. `sudo -E scripts/test`"
    )]
    NeedsRoot,
    /// A tool is missing.
    #[error("the lab needs `{tool}` ({package}); install it: apt-get install -y {package}")]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// A command could not be started.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {ms} ms")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was given.
        ms: u128,
    },
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A command's output could not be read.
    #[error("unexpected output from `{command}`: {why}")]
    Parse {
        /// The command line.
        command: String,
        /// What was unexpected.
        why: String,
    },
}
