//! `nw-http`: the HTTP layer under nw-transfer's sessions, with no file, store or task in it.
//!
//! - [`proxy`]: the proxies a load goes through — the environment's (`http_proxy`,
//!   `https_proxy`, `all_proxy`, `no_proxy`, as curl reads them) or a PAC file's choice.
//! - [`pac`]: PAC files: `FindProxyForURL` with its standard helpers, sandboxed in QuickJS with
//!   a time limit.
//! - [`pool`]: idle connections per origin, flushed when the path changes.
//! - [`altsvc`]: HTTP/3 discovery through `Alt-Svc`, over an injected clock.
//! - [`policy`]: the ATS-like policy for HTTP loads.
//! - [`redirect`]: which answers redirect, where to, with what method, and when to stop.
//! - [`cookies`]: the session's cookie jar.
//! - [`auth`]: the `Authorization` a credential provider gives per origin, asked again after a
//!   401 with the server's challenge.
//! - [`netrc`]: logins from `.netrc`.
//! - [`decode`]: content decoding (gzip, deflate, br, zstd) for data tasks.
//! - [`h1`]: HTTP/1.1's message syntax as a sans-IO codec (bytes in, heads and body boundaries
//!   out), which nw-transfer's HTTP/1.1 connection drives.
//!
//! Errors are [`Error`]: in HTTP's words, with no command-line hint; nw-transfer turns them
//! into its `TransferError`.
//!
//! What an application sets on a session is named at the crate's root ([`Proxies`],
//! [`Cookies`], [`CredentialProvider`], [`Pac`], [`Netrc`]) and re-exported by nw-transfer, so
//! an application that embeds sessions needs no other crate; the modules hold the machinery
//! nw-transfer builds on.
#![warn(missing_docs)]

use std::path::PathBuf;

pub mod altsvc;
pub mod auth;
pub mod cookies;
pub mod decode;
pub mod h1;
pub mod netrc;
pub mod pac;
pub mod policy;
pub mod pool;
pub mod proxy;
pub mod redirect;

pub use altsvc::{Origin, origin};
pub use auth::{Authorizer, CredentialProvider, Refused};
pub use cookies::{Cookies, Jar};
pub use decode::DecodeError;
pub use netrc::{Login, Netrc};
pub use pac::{Pac, PacError};
pub use proxy::Proxies;

/// What went wrong in the HTTP layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used as given (a proxy variable that names no proxy, a cookie jar
    /// others may write): correct it.
    #[error("{0}")]
    Setting(String),
    /// A redirect that is not followed.
    #[error("{why}")]
    Redirect {
        /// Which kind of refusal.
        kind: redirect::Refusal,
        /// In words.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The PAC file could not be fetched, read or run.
    #[error(transparent)]
    Pac(#[from] PacError),
}

impl Error {
    fn io(path: &std::path::Path, what: &'static str, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), what, source }
    }
}
