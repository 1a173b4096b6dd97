//! What `nw get` and `nw put` send besides the request itself: `-H` fields, `--user`'s Basic
//! authentication, `--bearer` tokens, logins from a `.netrc` file, and a command asked for
//! tokens — one set of flags and rules for both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nw_connection::BoxFuture;
use nw_http::auth::{CredentialProvider, Refused};

use crate::UsageError;

#[derive(Debug, Default, clap::Args)]
pub(crate) struct CredentialArgs {
    /// An extra request header, `-H 'Name: value'` (repeatable). Credentials (Authorization,
    /// Cookie) go only to the URL's own origin, never to one a redirect leads to.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// HTTP Basic authentication as USER:PASSWORD (only over HTTPS or to a local name, and
    /// only to the URL's own origin).
    #[arg(long, short = 'u', value_name = "USER:PASSWORD")]
    user: Option<String>,
    /// Take the user and password for each URL's host from ~/.netrc ($NETRC when set), as
    /// curl -n does; the same rules as --user. The file must be readable by its owner only.
    #[arg(short = 'n', long, conflicts_with = "user")]
    netrc: bool,
    /// --netrc from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["user", "netrc"])]
    netrc_file: Option<PathBuf>,
    /// Send `Authorization: Bearer TOKEN` (OAuth 2.0, RFC 6750), under --user's rules.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["user", "netrc", "netrc_file"])]
    bearer: Option<String>,
    /// Ask this shell command for a bearer token (the first line it prints), once per origin
    /// and again when the server refuses it (401): 'gcloud auth print-access-token', say. It
    /// runs with NW_AUTH_URL set, and after a refusal with NW_AUTH_CHALLENGE (the server's
    /// WWW-Authenticate); 30 s at most. Only over HTTPS or to a local name, and only to the
    /// URLs' own origins (never one a redirect leads to).
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["user", "netrc", "netrc_file", "bearer"])]
    bearer_command: Option<String>,
}

/// The flags read and checked: the fields for any URL, the `.netrc` to look hosts up in, and
/// the command to ask for tokens.
pub(crate) struct Credentials {
    headers: Vec<(String, String)>,
    netrc: Option<(PathBuf, nw_http::netrc::Netrc)>,
    command: Option<String>,
    /// The origins of the URLs given: the only ones the command's tokens go to, as `--bearer`'s
    /// and `--user`'s never cross a redirect to another origin.
    origins: Vec<nw_http::altsvc::Origin>,
}

impl CredentialArgs {
    /// Reads the flags for requests to `urls`: `-H` values parsed, `--user` refused for a URL
    /// it would cross the network in the clear to, the `.netrc` read.
    pub(crate) fn resolve(&self, urls: &[String]) -> anyhow::Result<Credentials> {
        let mut headers = request_headers(&self.headers, self.user.as_deref())?;
        if let Some(token) = &self.bearer {
            let token = bearer_token(token).ok_or_else(|| {
                UsageError(format!(
                    "--bearer: that is not a token ({TOKEN_SHAPE}); check what was pasted"
                ))
            })?;
            headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
        }
        let secret = match (&self.user, &self.bearer, &self.bearer_command) {
            (Some(_), _, _) => Some("--user"),
            (_, Some(_), _) => Some("--bearer"),
            (_, _, Some(_)) => Some("--bearer-command"),
            _ => None,
        };
        // The URLs that parse (the others fail later, with their own error).
        let parsed: Vec<(&String, nw_connection::Url)> = urls
            .iter()
            .filter_map(|text| match nw_connection::Endpoint::parse(text) {
                Ok(nw_connection::Endpoint::Url(u)) => Some((text, u)),
                _ => None,
            })
            .collect();
        if let Some(flag) = secret
            && let Some((url, _)) = parsed
                .iter()
                .find(|(_, u)| u.scheme == "http" && !nw_http::auth::may_carry_credentials(u))
        {
            return Err(UsageError(format!(
                "{flag} with {url} would send the secret in the clear; use https://"
            ))
            .into());
        }
        if let Some(command) = &self.bearer_command
            && command.trim().is_empty()
        {
            return Err(UsageError("--bearer-command: give a command".into()).into());
        }
        let origins = parsed.iter().map(|(_, u)| nw_http::altsvc::origin(u)).collect();
        Ok(Credentials {
            headers,
            netrc: self.netrc()?,
            command: self.bearer_command.clone(),
            origins,
        })
    }

    /// The `.netrc` `--netrc`/`--netrc-file` name, read and parsed: refused when others may
    /// read it (ftp(1)'s rule: it holds passwords), when it is not a regular file (a FIFO would
    /// hang the read), or larger than 1 MiB.
    fn netrc(&self) -> anyhow::Result<Option<(PathBuf, nw_http::netrc::Netrc)>> {
        use std::os::unix::fs::MetadataExt as _;
        let path = match (&self.netrc_file, self.netrc) {
            (Some(file), _) => file.clone(),
            (None, true) => match std::env::var_os("NETRC") {
                Some(p) => PathBuf::from(p),
                None => match std::env::var_os("HOME") {
                    Some(home) => PathBuf::from(home).join(".netrc"),
                    None => {
                        return Err(UsageError(
                            "--netrc: HOME is not set; give --netrc-file FILE".into(),
                        )
                        .into());
                    }
                },
            },
            (None, false) => return Ok(None),
        };
        let shown = path.display();
        // Following a link, as a dotfile often is one; never waiting on a FIFO or a device.
        let (bytes, meta) =
            nw_trust::files::read_regular(&path, true, 1 << 20).map_err(|e| match e.kind() {
                std::io::ErrorKind::FileTooLarge => {
                    UsageError(format!("{shown}: larger than 1 MiB; is it the right file?"))
                }
                _ => UsageError(format!("{shown}: {e}")),
            })?;
        if meta.mode() & 0o077 != 0 {
            return Err(UsageError(format!(
                "{shown} may be read by others (mode {:o}) and holds passwords; chmod 600 it",
                meta.mode() & 0o777
            ))
            .into());
        }
        let text =
            String::from_utf8(bytes).map_err(|_| UsageError(format!("{shown}: not text")))?;
        let parsed =
            nw_http::netrc::Netrc::parse(&text).map_err(|e| UsageError(format!("{shown}: {e}")))?;
        Ok(Some((path, parsed)))
    }
}

impl Credentials {
    /// Refuses them for a transfer to be `queued`: credentials stay out of the store. `instead`
    /// says what to do (`download without --queue`).
    pub(crate) fn refuse_queued(&self, queued: bool, instead: &str) -> anyhow::Result<()> {
        let none = self.headers.is_empty() && self.netrc.is_none() && self.command.is_none();
        if queued && !none {
            return Err(UsageError(format!(
                "-H, --user, --bearer and --netrc are not kept for queued transfers (credentials stay out of the store); {instead}"
            ))
            .into());
        }
        Ok(())
    }

    /// The session's credential provider: `--bearer-command`'s.
    pub(crate) fn provider(&self) -> Option<Arc<dyn CredentialProvider>> {
        let command = self.command.clone()?;
        Some(Arc::new(TokenCommand { command, origins: self.origins.clone() }))
    }

    /// The fields for a request to `url`: `-H`'s and `--user`'s, and the `.netrc` login for its
    /// host when no `Authorization` was given.
    pub(crate) fn for_url(&self, url: &str) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if let Some(login) = self.netrc.as_ref().and_then(|(file, n)| netrc_login(file, n, url))
            && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            headers.push(basic(&format!("{}:{}", login.user, login.password)));
        }
        headers
    }
}

/// `-H` values as fields, and `--user` as an `Authorization: Basic` field (RFC 7617).
fn request_headers(given: &[String], user: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for h in given {
        let Some((name, value)) = h.split_once(':') else {
            return Err(UsageError(format!("-H {h:?}: give it as 'Name: value'")).into());
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if let Some(user) = user {
        if !user.contains(':') {
            return Err(UsageError(
                "--user: give USER:PASSWORD (nw does not prompt for a password)".into(),
            )
            .into());
        }
        headers.push(basic(user));
    }
    Ok(headers)
}

/// An `Authorization: Basic` field for `USER:PASSWORD` (RFC 7617).
fn basic(user_password: &str) -> (String, String) {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(user_password);
    ("Authorization".to_owned(), format!("Basic {token}"))
}

/// The `.netrc` login for `url`'s host, when it may be sent there: over HTTPS, or plain HTTP to
/// a local name (as --user); otherwise none, and nw says why.
fn netrc_login<'a>(
    file: &Path,
    netrc: &'a nw_http::netrc::Netrc,
    url: &str,
) -> Option<&'a nw_http::netrc::Login> {
    let Ok(nw_connection::Endpoint::Url(u)) = nw_connection::Endpoint::parse(url) else {
        return None;
    };
    let login = netrc.login_for(&u.host)?;
    if u.scheme == "http" && !nw_http::auth::may_carry_credentials(&u) {
        crate::output::error_line(&format!(
            "nw: {}: not sending the login for {} from {} over plain HTTP",
            url,
            u.host,
            file.display()
        ));
        return None;
    }
    Some(login)
}

/// `--bearer-command`: a shell command that prints a token, asked only for the origins of the
/// URLs on the command line (a redirect elsewhere gets no token, and the command is not run).
#[derive(Debug)]
struct TokenCommand {
    command: String,
    origins: Vec<nw_http::altsvc::Origin>,
}

/// How long the token command may take.
const TOKEN_COMMAND_LIMIT: Duration = Duration::from_secs(30);

impl CredentialProvider for TokenCommand {
    fn authorization<'a>(
        &'a self,
        url: &'a str,
        refused: Option<Refused<'a>>,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let ours = match nw_connection::Endpoint::parse(url) {
                Ok(nw_connection::Endpoint::Url(u)) => {
                    self.origins.contains(&nw_http::altsvc::origin(&u))
                }
                _ => false,
            };
            if !ours {
                tracing::debug!("no token for {url}: not an origin given on the command line");
                return None;
            }
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(&self.command)
                .env("NW_AUTH_URL", url)
                .env_remove("NW_AUTH_CHALLENGE")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            if let Some(r) = refused {
                cmd.env("NW_AUTH_CHALLENGE", r.challenge.unwrap_or(""));
            }
            let said = |why: String| {
                crate::output::error_line(&format!("nw: --bearer-command: {why}; no token sent"));
                None
            };
            let out = match tokio::time::timeout(TOKEN_COMMAND_LIMIT, bounded_output(cmd)).await {
                Ok(Ok(out)) => out,
                Ok(Err(why)) => return said(why),
                Err(_) => return said(format!("no answer in {} s", TOKEN_COMMAND_LIMIT.as_secs())),
            };
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                return said(format!("it failed ({}): {}", out.status, err.trim()));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().next().map(bearer_token) {
                Some(Some(token)) => Some(format!("Bearer {token}")),
                Some(None) => said(format!("its first line is not a token ({TOKEN_SHAPE})")),
                None => said("it printed no token".into()),
            }
        })
    }
}

/// The most a token command may print on stdout (a JWT is a few KiB), and the most of its
/// stderr that is shown.
const TOKEN_OUTPUT_LIMIT: usize = 64 * 1024;
const TOKEN_ERROR_SHOWN: usize = 2 * 1024;

/// What the command printed, kept within the limits: a command that prints a token without
/// end is stopped (killed when dropped) instead of filling memory, and only the start of its
/// stderr is kept (the rest is read and dropped, so it cannot block on a full pipe).
async fn bounded_output(mut cmd: tokio::process::Command) -> Result<std::process::Output, String> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let read_out = async {
        let Some(o) = stdout else { return Ok(Vec::new()) };
        match read_capped(o, TOKEN_OUTPUT_LIMIT, true).await {
            Ok((bytes, false)) => Ok(bytes),
            Ok((_, true)) => Err(format!(
                "it printed more than {} KiB, which is no token",
                TOKEN_OUTPUT_LIMIT / 1024
            )),
            Err(e) => Err(format!("cannot read what it printed: {e}")),
        }
    };
    let read_err = async {
        let Some(e) = stderr else { return Ok(Vec::new()) };
        let kept = read_capped(e, TOKEN_ERROR_SHOWN, false).await;
        kept.map(|(bytes, _)| bytes).map_err(|e| format!("cannot read its errors: {e}"))
    };
    let (stdout, stderr) = tokio::try_join!(read_out, read_err)?;
    let status = child.wait().await.map_err(|e| format!("cannot wait for it: {e}"))?;
    Ok(std::process::Output { status, stdout, stderr })
}

/// Reads `from` to its end keeping the first `cap` bytes; the flag says more came. With
/// `stop`, it returns as soon as more than `cap` came.
async fn read_capped(
    mut from: impl tokio::io::AsyncRead + Unpin,
    cap: usize,
    stop: bool,
) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt as _;
    let (mut kept, mut more, mut chunk) = (Vec::new(), false, vec![0; 8192]);
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, more));
        }
        let room = cap - kept.len();
        kept.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            more = true;
            if stop {
                return Ok((kept, more));
            }
        }
    }
}

/// What a bearer token is made of, in words (RFC 6750 §2.1, `b64token`).
const TOKEN_SHAPE: &str = "letters, digits and -._~+/, then any number of =";

/// `text` as a bearer token, trimmed, when it has RFC 6750's `b64token` shape; a secret that
/// does not is refused without being shown.
fn bearer_token(text: &str) -> Option<&str> {
    let token = text.trim();
    let body = token.trim_end_matches('=');
    let fine =
        !body.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
    fine.then_some(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bearer_token_has_the_b64token_shape() {
        for good in ["abc", " ya29.a0Af-_~+/x== ", "tok2"] {
            assert_eq!(super::bearer_token(good), Some(good.trim()), "{good:?}");
        }
        for bad in ["", "   ", "==", "a b", "ab\ncd", "tok;evil", "é"] {
            assert_eq!(super::bearer_token(bad), None, "{bad:?}");
        }
    }
}
