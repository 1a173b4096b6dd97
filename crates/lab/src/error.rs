use std::process::ExitStatus;

/// What went wrong setting up or driving the lab. Each message says what to try.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error(
        "the lab needs root (network namespaces, veth, nftables); run the tests as root, e.g. `sudo -E scripts/test`"
    )]
    NeedsRoot,
    #[error("the lab needs `{tool}` ({package}); install it: apt-get install -y {package}")]
    MissingTool { tool: &'static str, package: &'static str },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: ExitStatus, stderr: String },
    #[error("could not run `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{what} did not happen within {ms} ms")]
    Timeout { what: String, ms: u128 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected output from `{command}`: {why}")]
    Parse { command: String, why: String },
}
