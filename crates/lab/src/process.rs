//! Child processes that cannot outlive their test.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// A running child process; dropping it kills it and reaps it.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    command: String,
    /// It leads a process group of its own, and signals go to the whole group.
    group: bool,
}

impl Child {
    pub(crate) fn spawn(mut cmd: std::process::Command) -> Result<Self, LabError> {
        let command = describe(&cmd);
        let inner =
            cmd.spawn().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
        Ok(Self { inner, command, group: false })
    }

    /// Starts `cmd` as the leader of a new process group, so that ending it ends what it
    /// started too (a `sh -c` and its commands).
    pub fn spawn_group(mut cmd: std::process::Command) -> Result<Self, LabError> {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = Self::spawn(cmd)?;
        child.group = true;
        Ok(child)
    }

    /// Sends `signal` to the child, or to its group.
    fn signal(&self, signal: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.inner.id()) {
            let target = if self.group { -pid } else { pid };
            // SAFETY: kill(2) on a pid (or the group it leads) we spawned and have not reaped;
            // no memory involved.
            unsafe { libc::kill(target, signal) };
        }
    }

    /// The child's standard input, if it was piped and not yet taken.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.inner.stdin.take()
    }

    /// The child's standard output, if it was piped and not yet taken.
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// The child's standard error, if it was piped and not yet taken.
    pub fn stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LabError> {
        Ok(self.inner.try_wait()?)
    }

    /// Waits for the child to exit, at most `limit`; past it, kills it and says so.
    #[allow(clippy::disallowed_methods, reason = "lab: bounded wait on a child process")]
    pub fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus, LabError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.inner.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                self.kill();
                return Err(LabError::Timeout {
                    what: format!("exit of `{}`", self.command),
                    ms: limit.as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM, waits briefly, then SIGKILL.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.inner.try_wait() {
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        self.wait_for(Duration::from_secs(2)).ok()
    }

    fn kill(&mut self) {
        if self.group {
            self.signal(libc::SIGKILL);
        }
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.terminate().is_none() {
            self.kill();
        }
    }
}

pub(crate) fn describe(cmd: &std::process::Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion (bounded), returning stdout; a non-zero exit is an error that
/// carries stderr.
#[allow(clippy::disallowed_methods, reason = "lab: bounded wait on a child process")]
pub(crate) fn output(mut cmd: std::process::Command) -> Result<String, LabError> {
    let command = describe(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child =
        cmd.spawn().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
