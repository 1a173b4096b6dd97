//! The gate a connection or a filter host asks: may this app reach this destination? Local
//! destinations only read the files; everything else is allowed without touching them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use crate::classify::Locality;
use crate::identity::Identified;
use crate::store::{self, Access, Answer, Paths, Policy, Source, StoreError};

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the app may reach the destination.
    pub allowed: bool,
    /// The app's identity.
    pub identity: String,
    /// The destination, as given.
    pub destination: String,
    /// Why the destination is (or is not) the local network.
    pub locality: Locality,
    /// What decided: the policy, the store, the prompt, or the default (check off, headless).
    pub by: Source,
}

/// Which way the traffic would go: the app reaching out, or a peer reaching the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The app connects to (or sends to) the destination.
    #[default]
    Outbound,
    /// A peer on the local network connected to (or sent to) one of the app's listeners; the
    /// destination is the peer. The same permission covers both ways.
    Inbound,
}

impl Direction {
    /// `"outbound"` or `"inbound"`, as the log and the prompt hook (`NW_LNP_DIRECTION`) say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// Decides whether `who` may reach `destination` (shown as given; `locality` from
/// [`classify`](crate::classify())), or be reached by it when `direction` is
/// [`Direction::Inbound`]. Not local: allowed, no file read. Local: the files decide,
/// an undecided app is asked through the prompt hook (blocking, up to
/// [`PROMPT_TIMEOUT`](store::PROMPT_TIMEOUT)), and a denial is appended to the log with its
/// direction.
///
/// Blocking: call it from a blocking thread.
pub fn permit(
    paths: &Paths,
    who: &Identified,
    destination: &str,
    locality: &Locality,
    direction: Direction,
) -> Result<Verdict, StoreError> {
    let verdict = |allowed: bool, by: Source| Verdict {
        allowed,
        identity: who.identity.clone(),
        destination: destination.to_owned(),
        locality: locality.clone(),
        by,
    };
    if !locality.is_local() {
        return Ok(verdict(true, Source::Default));
    }
    let policy = Policy::load(paths)?;
    let decision = policy.decide_for(who);
    let out = match decision.access {
        Access::Allow => verdict(true, decision.by),
        Access::Deny => verdict(false, decision.by),
        Access::Ask => match policy.prompt().and_then(|p| ask(p, who, destination, direction)) {
            Some(answer) => {
                let identity = who.identity.clone();
                let stored = store::update(paths, |f| {
                    f.apps.insert(
                        identity,
                        if answer == Answer::Allow { Access::Allow } else { Access::Deny },
                    );
                });
                if let Err(e) = stored {
                    tracing::warn!("the prompt's answer could not be stored: {e}");
                }
                verdict(answer == Answer::Allow, Source::Prompt)
            }
            None => {
                let (answer, by) = policy.headless();
                verdict(answer == Answer::Allow, by)
            }
        },
    };
    if !out.allowed {
        crate::log::append(paths, &crate::log::Denial::of(&out, who, direction));
    }
    Ok(out)
}

/// The program of the prompt hook `command` when it cannot be found the way [`permit`] starts
/// it (a name without a slash is looked up on `PATH`, any other path is taken as it is), or
/// `None` when it can be. A hook that is missing is never asked: undecided apps get the
/// headless answer.
pub fn missing_hook(command: &[String]) -> Option<&str> {
    let program = command.first()?;
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    (!found).then_some(program.as_str())
}

/// Runs the prompt hook; `Some` when it answered (exit 0 allow, 1 deny) in time.
#[allow(clippy::disallowed_methods, reason = "waits for the hook's process, on a blocking thread")]
fn ask(
    command: &[String],
    who: &Identified,
    destination: &str,
    direction: Direction,
) -> Option<Answer> {
    let (program, args) = command.split_first()?;
    let mut child = std::process::Command::new(Path::new(program))
        .args(args)
        .env("NW_LNP_IDENTITY", &who.identity)
        .env("NW_LNP_DESTINATION", destination)
        .env("NW_LNP_DIRECTION", direction.as_str())
        .env("NW_LNP_EXECUTABLE", &who.executable)
        .env("NW_LNP_PID", who.pid.map(|p| p.to_string()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| tracing::warn!("the prompt hook {program} could not start: {e}"))
        .ok()?;
    let deadline = std::time::Instant::now() + store::PROMPT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match status.code() {
                    Some(0) => Some(Answer::Allow),
                    Some(1) => Some(Answer::Deny),
                    _ => {
                        tracing::warn!("the prompt hook {program} gave no answer ({status})");
                        None
                    }
                };
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                tracing::warn!("the prompt hook {program} did not answer in time");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
