//! Output rules: payload on stdout, logs and reports on stderr, errors that say what to try.

use std::io::Write;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Every crate of the workspace, as tracing names its targets: their messages are shown at
/// nwkit's level, not one quieter as dependencies' are (a tunnel's "the kill switch did not
/// follow the local network" is a warning the user must see).
const OURS: [&str; 15] = [
    "nw",
    "nw_path",
    "nw_connection",
    "nw_trust",
    "nw_http",
    "nw_transfer",
    "nw_serve",
    "nw_quality",
    "nw_conditioner",
    "nw_lab",
    "nw_lnp",
    "nw_provider",
    "nw_tunnel",
    "nw_filter",
    "nw_wireguard",
];

pub(crate) fn init_logging(verbose: u8) {
    // -v raises nwkit's own crates; dependencies stay one level quieter, so their chatter
    // (quinn-udp warning about every refused datagram) does not drown ours.
    let (ours, theirs) = match verbose {
        0 => ("warn", "error"),
        1 => ("info", "warn"),
        2 => ("debug", "info"),
        _ => ("trace", "debug"),
    };
    let ours_all: String = OURS.iter().map(|krate| format!(",{krate}={ours}")).collect();
    let default = format!("{theirs}{ours_all}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal (and never with NO_COLOR): a log file or a pipe
    // gets plain text, not escape codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Prints an error chain on stderr and returns exit status 3.
pub(crate) fn fail_environment(e: &anyhow::Error) -> ExitCode {
    error_line(&format!("nw: {}", error_text(e)));
    ExitCode::from(crate::EXIT_ENVIRONMENT)
}

/// An error and its causes, "a: b: c", each cause once: many errors already say their
/// source in their own words (`path: what: source`), and anyhow's `{:#}` would repeat it.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let more = cause.to_string();
        if text.is_empty() {
            text = more;
        } else if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
    }
    text
}

/// Writes one line of payload to stdout. A closed pipe (`nw path --watch | head -1`) is not an
/// error worth a panic: the caller stops.
pub(crate) fn line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// One line of output on stdout for a command that must finish its work whoever reads it: a
/// closed pipe (`nw tunnel up | head -1`) loses this line and the later ones, never the work —
/// a panic there (what `println!` does) left a killed tunnel's routes, or a filter's rules,
/// behind.
#[allow(clippy::print_stdout, reason = "the commands' output")]
pub(crate) fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// RFC 3339 UTC timestamp with milliseconds, for reports.
#[allow(clippy::disallowed_methods, reason = "front end: stamps reports with wall time")]
pub(crate) fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// One line on stderr (reports, errors). A closed stderr is not worth failing over.
pub(crate) fn error_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// A future that resolves when the process is asked to stop (SIGINT, SIGTERM or SIGHUP), with
/// the exit status a shell expects for it (128 + the signal's number). The handlers are
/// installed when this is called, so from then on those signals no longer kill the process
/// outright and what waits on the future can clean up.
pub(crate) fn interrupted() -> impl Future<Output = u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), 130),
        (SignalKind::terminate(), 143),
        (SignalKind::hangup(), 129),
    ];
    let mut streams = Vec::new();
    for (kind, status) in kinds {
        match signal(kind) {
            Ok(s) => streams.push((s, status)),
            Err(e) => tracing::debug!("cannot watch {kind:?}: {e}"),
        }
    }
    std::future::poll_fn(move |cx| {
        for (stream, status) in &mut streams {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*status);
            }
        }
        std::task::Poll::Pending
    })
}

/// `work`, unless `stop` (an [`interrupted`], pinned) comes first: then the signal's exit
/// status, and `work` is dropped.
pub(crate) async fn unless_stopped<T>(
    work: impl Future<Output = T>,
    stop: &mut (impl Future<Output = u8> + Unpin),
) -> Result<T, u8> {
    tokio::select! {
        done = work => Ok(done),
        code = stop => Err(code),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_crate_of_the_workspace_logs_at_our_level() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut named = 0;
        for dir in std::fs::read_dir(&crates).unwrap_or_else(|e| panic!("{e}")).flatten() {
            let Ok(manifest) = std::fs::read_to_string(dir.path().join("Cargo.toml")) else {
                continue;
            };
            let name = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{}: no package name", dir.path().display()));
            let target = name.replace('-', "_");
            assert!(super::OURS.contains(&target.as_str()), "{target} is missing from OURS");
            named += 1;
        }
        assert_eq!(named, super::OURS.len(), "OURS names a crate that is not in crates/");
    }

    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let e = anyhow::Error::new(io)
            .context("/tmp/jar: cannot read it: Is a directory (os error 21)");
        assert_eq!(super::error_text(&e), "/tmp/jar: cannot read it: Is a directory (os error 21)");
        let e = anyhow::Error::new(std::io::Error::other("refused")).context("connecting");
        assert_eq!(super::error_text(&e), "connecting: refused");
    }
}
