//! What the integration tests share: `nw path --watch --json` and `ip monitor` as child
//! processes with their lines timestamped as they arrive, and small readers of `nw`'s JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nw_lab::{Child, Namespace};
use serde_json::Value;

pub(crate) const NW: &str = env!("CARGO_BIN_EXE_nw");

/// A scratch directory, unique to this process and `tag`, removed on drop.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A file in it, as a string for a command line.
    pub(crate) fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Instant, Value)>,
    stderr: mpsc::Receiver<String>,
}

impl Watcher {
    /// Starts `nw path --watch --json ARGS` inside `ns` with extra environment variables, and
    /// waits for its initial line.
    pub(crate) fn start(ns: &Namespace, args: &[&str], env: &[(&str, &str)]) -> (Self, Value) {
        let mut cmd = ns.command(NW);
        cmd.args(["path", "--watch", "--json"]).args(args);
        cmd.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = ns.spawn(cmd).expect("start nw path --watch");
        let out = child.stdout().expect("stdout piped");
        let err = child.stderr().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let at = Instant::now();
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send((at, value)).is_err() {
                    return;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let mut w = Self { child, lines, stderr };
        let (_, first) = w.next(Duration::from_secs(5)).expect("an initial line within 5 s");
        assert_eq!(first["cause"], "initial", "{first}");
        (w, first)
    }

    pub(crate) fn next(&mut self, limit: Duration) -> Option<(Instant, Value)> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Every line that arrives within `limit`.
    pub(crate) fn collect(&mut self, limit: Duration) -> Vec<(Instant, Value)> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => out.push(l),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits for a line that satisfies `pred`, returning it and the lines before it.
    pub(crate) fn wait_for(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((at, v)) if pred(&v) => return (at, v),
                Ok((_, v)) => seen.push(v),
                Err(_) => break,
            }
        }
        panic!("no matching line within {limit:?}; saw {seen:#?}\nstderr: {}", self.stderr_text());
    }

    pub(crate) fn stderr_text(&mut self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// CPU time (user + system) the monitor process has used, in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        // Fields after the command name in parentheses; utime and stime are 14th and 15th.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

pub(crate) fn status(v: &Value) -> (&str, &str) {
    (v["status"].as_str().unwrap_or("?"), v["reason"].as_str().unwrap_or(""))
}

pub(crate) fn interface<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["interfaces"].as_array()?.iter().find(|i| i["name"] == name)
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Makes a named pipe at `path` (nothing writes to it: a program that opens it waits).
pub(crate) fn mkfifo(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path the test owns.
    let made = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `ip monitor link` (or `route`, …) in a namespace, its lines timestamped as they arrive: the
/// kernel's own notification time, to compare ours with in the same run.
pub(crate) struct IpMonitor {
    _child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl IpMonitor {
    pub(crate) fn start(ns: &Namespace, objects: &str) -> Self {
        let mut cmd = ns.command("ip");
        // `-ts` stamps each event with the wall clock when `ip` received it (local time: UTC).
        cmd.args(["-ts", "monitor", objects]).env("TZ", "UTC");
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = ns.spawn(cmd).expect("start ip monitor");
        let out = child.stdout().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        // Give it a moment to subscribe.
        std::thread::sleep(Duration::from_millis(200));
        Self { _child: child, lines }
    }

    pub(crate) fn drain(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// How many of the lines that came so far contain `needle` (the rest are dropped too).
    pub(crate) fn count(&mut self, needle: &str) -> usize {
        self.lines.try_iter().filter(|(_, l)| l.contains(needle)).count()
    }

    /// The first line containing `needle`: when it reached the test, and when `ip` received
    /// the event (seconds since midnight UTC, from its `-ts` stamp).
    pub(crate) fn wait_for(&mut self, limit: Duration, needle: &str) -> (Instant, f64) {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((at, l)) if l.contains(needle) => {
                    let stamp =
                        seconds_of_day(&l).unwrap_or_else(|| panic!("no -ts time stamp in {l:?}"));
                    return (at, stamp);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("ip monitor showed no {needle:?} within {limit:?}");
    }
}

/// Seconds since midnight of the first `YYYY-MM-DDTHH:MM:SS[.frac]` in `text`: `ip -ts`'s
/// `[2026-12-06T21:35:30.426330]` and our `"ts":"2026-12-06T21:35:30.433Z"` alike.
pub(crate) fn seconds_of_day(text: &str) -> Option<f64> {
    let at = text.char_indices().find_map(|(i, _)| {
        let b = text.as_bytes();
        (b.len() > i + 19
            && b[i + 4] == b'-'
            && b[i + 7] == b'-'
            && b[i + 10] == b'T'
            && b[i + 13] == b':'
            && b[i + 16] == b':')
            .then_some(i + 11)
    })?;
    let clock: String =
        text[at..].chars().take_while(|c| c.is_ascii_digit() || *c == ':' || *c == '.').collect();
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// CPU time (user + system) a process has used, in clock ticks (0 once it has gone).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name in parentheses; utime and stime are the 14th and 15th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Runs `nw ARGS` inside `ns`; it must succeed, and its first stderr line must be the JSON
/// report that `--json` asks for.
pub(crate) fn nw_report(ns: &Namespace, args: &[&str]) -> Value {
    let out = ns.command(NW).args(args).output().expect("run nw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nw {args:?} failed: {stderr}");
    serde_json::from_str(stderr.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"))
}

/// The first event of this kind in a connection report.
pub(crate) fn event<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event"] == kind))
        .unwrap_or_else(|| panic!("no {kind} event: {report}"))
}

/// The section of `nw doctor --json` output with this name.
pub(crate) fn section<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["sections"]
        .as_array()
        .and_then(|sections| sections.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} section: {doctor}"))
}

/// A `--json` command's event lines (`nw tunnel up`, `nw filter up`), read as they come.
pub(crate) struct Events {
    pub(crate) child: Child,
    lines: mpsc::Receiver<Value>,
    pub(crate) seen: Vec<Value>,
}

impl Events {
    /// Starts `cmd` in `ns` with its stdout read as JSON lines; stderr is inherited.
    pub(crate) fn spawn(ns: &Namespace, cmd: std::process::Command) -> Self {
        Self::spawn_to(ns, cmd, Stdio::inherit())
    }

    /// As [`Events::spawn`], with stderr going to `stderr` (a file, say).
    pub(crate) fn spawn_to(ns: &Namespace, mut cmd: std::process::Command, stderr: Stdio) -> Self {
        cmd.stdout(Stdio::piped()).stderr(stderr);
        let mut child = ns.spawn(cmd).expect("start the command");
        let out = child.stdout().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The first event (from now on, or already seen) for which `pick` holds.
    pub(crate) fn wait(&mut self, limit: Duration, pick: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pick(v)) {
            return v.clone();
        }
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pick(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no such event within {limit:?}; events: {:#?}", self.seen)
    }

    /// The `n`th event (1-based) for which `pick` holds, counting those already seen.
    pub(crate) fn nth(
        &mut self,
        n: usize,
        limit: Duration,
        pick: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + limit;
        loop {
            self.drain();
            if let Some(v) = self.seen.iter().filter(|v| pick(v)).nth(n - 1) {
                return v.clone();
            }
            assert!(
                Instant::now() < end,
                "no event number {n} within {limit:?}; events: {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first event named `name`, within 15 s.
    pub(crate) fn event(&mut self, name: &str) -> Value {
        self.wait(Duration::from_secs(15), |v| v["event"] == name)
    }

    /// Every event that has arrived so far, read into `seen`.
    pub(crate) fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    /// SIGTERM, then the exit code (within 15 s).
    pub(crate) fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let code = self.child.wait_for(Duration::from_secs(15)).ok().and_then(|s| s.code());
        // The reader thread ends at EOF; give it a moment to hand over the last lines.
        std::thread::sleep(Duration::from_millis(100));
        self.drain();
        code
    }
}

/// `example` run with its reader gone at once (`… | head -0`): it ends with success and no
/// panic, where `println!` panicked on the closed pipe.
pub(crate) fn assert_ends_quietly_when_its_reader_goes(example: &Path) {
    let mut child = std::process::Command::new(example)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("its end");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !said.contains("panicked"), "{:?}: {said}", out.status);
}

/// The example program `name` of crate `package`, built beside `nw` (scripts/test builds every
/// example before the tests); a test fails saying how to build it when it is missing.
pub(crate) fn example(package: &str, name: &str) -> PathBuf {
    let path = Path::new(NW).with_file_name("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {package} --example {name}` (scripts/test does)",
        path.display()
    );
    path
}
