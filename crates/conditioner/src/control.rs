//! The control socket: another process changes a running link's conditions or reads its
//! counters while traffic flows, as `nw condition set` and `nw condition show` do.
//!
//! A Unix stream socket (a path, so it works from every network namespace), one JSON request
//! per line and one JSON reply per line:
//!
//! - `{"set":{"up":PATCH,"down":PATCH}}` changes the fields a [`Patch`] names, in either
//!   direction, from the next packet on; the reply is the state after the change.
//! - `{"show":{}}` changes nothing.
//!
//! A reply is `{"up":PATCH,"down":PATCH,"counters":{...}}` (each patch with every field set),
//! or `{"error":"what went wrong"}`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::link::{LinkCounters, Loss, Profile, QueueLimit};

/// A change to one direction's conditions: each field that is set replaces that setting;
/// the rest stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Bits per second; 0 removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bps: Option<u64>,
    /// One-way delay, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_us: Option<u64>,
    /// Jitter, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_us: Option<u64>,
    /// Extra delay of DNS packets, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_delay_us: Option<u64>,
    /// Uniform loss, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The queue's limit in packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_packets: Option<usize>,
    /// The queue's limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bytes: Option<usize>,
}

impl Patch {
    /// Every field of `profile` (a Gilbert–Elliott loss shows as its mean).
    pub fn of(profile: &Profile) -> Self {
        Self {
            rate_bps: Some(profile.rate_bps.unwrap_or(0)),
            delay_us: Some(micros(profile.delay)),
            jitter_us: Some(micros(profile.jitter)),
            dns_delay_us: Some(micros(profile.dns_delay)),
            loss: Some(mean_loss(profile.loss)),
            ..Self::default()
        }
        .with_queue(Some(profile.queue))
    }

    /// This patch with the queue set to `limit` in the field its unit names (the other one
    /// cleared); `None` leaves the queue as it is.
    #[must_use]
    pub fn with_queue(mut self, limit: Option<QueueLimit>) -> Self {
        match limit {
            Some(QueueLimit::Packets(n)) => {
                (self.queue_packets, self.queue_bytes) = (Some(n), None)
            }
            Some(QueueLimit::Bytes(n)) => (self.queue_packets, self.queue_bytes) = (None, Some(n)),
            None => {}
        }
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `profile` with this patch's fields in place, or what is wrong with them.
    pub fn apply(&self, profile: &Profile) -> Result<Profile, String> {
        let mut p = profile.clone();
        if let Some(rate) = self.rate_bps {
            p.rate_bps = (rate > 0).then_some(rate);
        }
        if let Some(us) = self.delay_us {
            p.delay = Duration::from_micros(us);
        }
        if let Some(us) = self.jitter_us {
            p.jitter = Duration::from_micros(us);
        }
        if let Some(us) = self.dns_delay_us {
            p.dns_delay = Duration::from_micros(us);
        }
        if let Some(loss) = self.loss {
            if !(0.0..=1.0).contains(&loss) {
                return Err(format!("loss {loss} is not between 0 and 1"));
            }
            p.loss = if loss > 0.0 { Loss::Uniform { p: loss } } else { Loss::None };
        }
        match (self.queue_packets, self.queue_bytes) {
            (Some(_), Some(_)) => {
                return Err("give the queue in packets or in bytes, not both".into());
            }
            (Some(n), None) => p.queue = QueueLimit::Packets(n),
            (None, Some(n)) => p.queue = QueueLimit::Bytes(n),
            (None, None) => {}
        }
        Ok(p)
    }

    /// This patch, then `later`'s fields over it.
    #[must_use]
    pub fn then(&self, later: &Self) -> Self {
        let mut p = self.clone();
        let queue_given = later.queue_packets.is_some() || later.queue_bytes.is_some();
        p.rate_bps = later.rate_bps.or(p.rate_bps);
        p.delay_us = later.delay_us.or(p.delay_us);
        p.jitter_us = later.jitter_us.or(p.jitter_us);
        p.dns_delay_us = later.dns_delay_us.or(p.dns_delay_us);
        p.loss = later.loss.or(p.loss);
        if queue_given {
            (p.queue_packets, p.queue_bytes) = (later.queue_packets, later.queue_bytes);
        }
        p
    }
}

/// `d` in whole microseconds, the unit of a patch's durations.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn mean_loss(loss: Loss) -> f64 {
    match loss {
        Loss::None => 0.0,
        Loss::Uniform { p } => p,
        Loss::GilbertElliott { p, r, loss_good, loss_bad } if p + r > 0.0 => {
            (r * loss_good + p * loss_bad) / (p + r)
        }
        Loss::GilbertElliott { loss_good, .. } => loss_good,
    }
}

/// What a control client asks.
#[allow(clippy::large_enum_variant, reason = "one short-lived message per request")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Change the conditions; what a patch leaves out stays.
    Set {
        /// Client to server.
        #[serde(default)]
        up: Patch,
        /// Server to client.
        #[serde(default)]
        down: Patch,
    },
    /// Read the conditions and counters.
    Show {},
}

/// The state of the link, as a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Client to server.
    pub up: Patch,
    /// Server to client.
    pub down: Patch,
    /// What each direction did.
    pub counters: LinkCounters,
}

#[allow(clippy::large_enum_variant, reason = "one short-lived message per request")]
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Reply {
    Error { error: String },
    State(State),
}

/// Something whose conditions can be read and changed while it runs: the TUN link or the
/// loopback proxy.
pub trait Conditioned: Send + Sync {
    /// The current (up, down) profiles.
    fn profiles(&self) -> (Profile, Profile);
    /// New profiles for either direction (`None` keeps it), from the next packet on.
    fn set(&self, up: Option<Profile>, down: Option<Profile>);
    /// What each direction did so far.
    fn counters(&self) -> LinkCounters;
}

fn state(link: &dyn Conditioned) -> State {
    let (up, down) = link.profiles();
    State { up: Patch::of(&up), down: Patch::of(&down), counters: link.counters() }
}

/// Carries out one request.
fn answer(link: &dyn Conditioned, request: &Request) -> Result<State, String> {
    if let Request::Set { up, down } = request {
        let (old_up, old_down) = link.profiles();
        let new_up = if up.is_empty() { None } else { Some(up.apply(&old_up)?) };
        let new_down = if down.is_empty() { None } else { Some(down.apply(&old_down)?) };
        link.set(new_up, new_down);
    }
    Ok(state(link))
}

/// A control socket being served; dropping it stops the thread and removes the socket file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `link` on a new socket at `path` (which must not exist yet), on its own
    /// threads.
    pub fn start(path: &Path, link: Arc<dyn Conditioned>) -> io::Result<Self> {
        let listener = UnixListener::bind(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", path.display()))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread =
            std::thread::Builder::new().name("nw-condition-control".into()).spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    // A thread per client (they are few), so a stuck one holds up neither the
                    // others nor the teardown.
                    if let Ok(stream) = stream {
                        let link = link.clone();
                        let _ = std::thread::Builder::new()
                            .name("nw-condition-client".into())
                            .spawn(move || serve(stream, link.as_ref()));
                    }
                }
            })?;
        Ok(Self { path: path.to_owned(), stop, thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a client may take over one request before it is dropped, so one stuck client
/// cannot hold the socket.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line read.
const MAX_LINE: u64 = 64 * 1024;

fn serve(stream: UnixStream, link: &dyn Conditioned) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(io::Read::take(stream, MAX_LINE));
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        let reply = match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => match answer(link, &request) {
                Ok(state) => Reply::State(state),
                Err(error) => Reply::Error { error },
            },
            Err(e) => Reply::Error {
                error: format!(
                    "not a request ({e}); send {{\"set\":{{\"up\":{{\"delay_us\":50000}}}}}} or {{\"show\":{{}}}}, one per line"
                ),
            },
        };
        let mut text = serde_json::to_string(&reply).map_err(io::Error::other)?;
        text.push('\n');
        writer.write_all(text.as_bytes())?;
        line.clear();
    }
    Ok(())
}

/// Sends one request to the control socket at `path` and returns the link's state after it,
/// or an error that says what went wrong.
pub fn request(path: &Path, request: &Request) -> io::Result<State> {
    let stream = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the conditioner's control socket {}: {e} (is `nw condition` running? it gives its client NW_CONDITION)",
                path.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut text = serde_json::to_string(request).map_err(io::Error::other)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_LINE)).read_line(&mut line)?;
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::State(state)) => Ok(state),
        Ok(Reply::Error { error }) => Err(io::Error::new(io::ErrorKind::InvalidInput, error)),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the control socket answered something else ({e}): {line:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Fake(Mutex<(Profile, Profile)>);

    impl Conditioned for Fake {
        fn profiles(&self) -> (Profile, Profile) {
            self.0.lock().unwrap().clone()
        }
        fn set(&self, up: Option<Profile>, down: Option<Profile>) {
            let mut p = self.0.lock().unwrap();
            p.0 = up.unwrap_or_else(|| p.0.clone());
            p.1 = down.unwrap_or_else(|| p.1.clone());
        }
        fn counters(&self) -> LinkCounters {
            LinkCounters::default()
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let base =
            Profile { rate_bps: Some(1000), delay: Duration::from_millis(5), ..Profile::default() };
        let p = Patch { delay_us: Some(50_000), ..Patch::default() }.apply(&base).unwrap();
        assert_eq!(p, Profile { delay: Duration::from_millis(50), ..base.clone() });
        let p = Patch { rate_bps: Some(0), queue_bytes: Some(100), ..Patch::default() };
        let p = p.apply(&base).unwrap();
        assert_eq!((p.rate_bps, p.queue), (None, QueueLimit::Bytes(100)));
        assert!(
            Patch { loss: Some(1.5), ..Patch::default() }
                .apply(&base)
                .unwrap_err()
                .contains("between 0 and 1")
        );
        let full = Patch::of(&base);
        assert_eq!(full.apply(&Profile::default()).unwrap(), base, "a full patch is the profile");
        let later = Patch { queue_bytes: Some(9), ..Patch::default() };
        let both = full.then(&later);
        assert_eq!(
            (both.queue_packets, both.queue_bytes, both.rate_bps),
            (None, Some(9), Some(1000))
        );
    }

    #[test]
    fn the_socket_sets_shows_and_explains_bad_requests() {
        let dir = std::env::temp_dir().join(format!("nw-control-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        let link = Arc::new(Fake::default());
        let server = Server::start(&path, link.clone()).unwrap();
        let up = Patch { delay_us: Some(20_000), loss: Some(0.25), ..Patch::default() };
        let state = request(&path, &Request::Set { up, down: Patch::default() }).unwrap();
        assert_eq!(state.up.delay_us, Some(20_000));
        assert_eq!(state.down.delay_us, Some(0));
        assert_eq!(link.profiles().0.loss, Loss::Uniform { p: 0.25 });
        assert_eq!(request(&path, &Request::Show {}).unwrap(), state);
        let bad = Patch { queue_packets: Some(1), queue_bytes: Some(1), ..Patch::default() };
        let err = request(&path, &Request::Set { up: Patch::default(), down: bad }).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        // Raw garbage gets an explanation, and the connection still answers afterwards.
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.write_all(b"hello\n{\"show\":{}}\n").unwrap();
        let mut lines = BufReader::new(raw).lines();
        assert!(lines.next().unwrap().unwrap().contains("not a request"));
        assert!(lines.next().unwrap().unwrap().contains("\"counters\""));
        drop(server);
        assert!(!path.exists(), "the socket file is removed");
        let err = request(&path, &Request::Show {}).unwrap_err();
        assert!(err.to_string().contains("is `nw condition` running"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
