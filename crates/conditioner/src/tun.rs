//! The conditioned link for real: see [`ConditionedLink`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use nw_lab::{Namespace, in_namespace};

use crate::control::{self, Conditioned};
use crate::link::{Link, LinkCounters, Profile};

/// The near end's addresses.
pub const NEAR_V4: &str = "192.0.2.1";
/// The near end's IPv6 address.
pub const NEAR_V6: &str = "2001:db8:c0::1";
/// The far end's addresses.
pub const FAR_V4: &str = "192.0.2.2";
/// The far end's IPv6 address.
pub const FAR_V6: &str = "2001:db8:c0::2";

#[derive(Debug, Default)]
struct Shared {
    /// The latest profiles: what the thread applies, and what the control socket reads.
    profiles: (Profile, Profile),
    /// Set since the thread last applied `profiles`.
    changed: bool,
    stop: bool,
    counters: LinkCounters,
}

/// What the thread and its controllers share.
#[derive(Debug, Clone)]
struct Handle {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<OwnedFd>,
}

impl Conditioned for Handle {
    fn profiles(&self) -> (Profile, Profile) {
        lock(&self.shared).profiles.clone()
    }

    fn set(&self, up: Option<Profile>, down: Option<Profile>) {
        {
            let mut shared = lock(&self.shared);
            if let Some(p) = up {
                shared.profiles.0 = p;
            }
            if let Some(p) = down {
                shared.profiles.1 = p;
            }
            shared.changed = true;
        }
        poke(&self.wake);
    }

    fn counters(&self) -> LinkCounters {
        lock(&self.shared).counters
    }
}

/// A running conditioned link; dropping it stops the thread and removes both TUN devices.
///
/// The conditioned link for real: a TUN device in each of two namespaces, both held by this
/// process, and one thread that moves every packet from one to the other through a
/// [`Link`](crate::Link) per direction. The thread sleeps in `poll(2)` on the two TUN
/// devices, a timerfd armed for the machines' next deadline (not a 1 ms tick) and an eventfd
/// for control; conditions change mid-run through [`ConditionedLink::set`].
///
/// Addresses: the near end is 192.0.2.1/24 and 2001:db8:c0::1/64, the far end .2 and ::2
/// (documentation prefixes, RFC 5737 and RFC 3849), on `tun0` in each namespace, with the
/// default routes over it.
#[derive(Debug)]
pub struct ConditionedLink {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl ConditionedLink {
    /// Joins `near` and `far` with a conditioned link: `up` shapes near → far, `down` far →
    /// near; randomness from `seed`.
    pub fn start(
        near: &Namespace,
        far: &Namespace,
        up: Profile,
        down: Profile,
        seed: u64,
    ) -> io::Result<Self> {
        let near_fd = open_tun(near)?;
        let far_fd = open_tun(far)?;
        configure(near, NEAR_V4, NEAR_V6)?;
        configure(far, FAR_V4, FAR_V6)?;
        // SAFETY: eventfd(2) returns a new descriptor or -1; nothing else is touched.
        let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        let wake = Arc::new(owned(wake)?);
        // SAFETY: as above, for timerfd_create(2).
        let timer = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        let timer = owned(timer)?;
        let shared = Arc::new(Mutex::new(Shared {
            profiles: (up.clone(), down.clone()),
            ..Shared::default()
        }));
        let (s, w) = (shared.clone(), wake.clone());
        let thread =
            std::thread::Builder::new().name("nw-conditioner".into()).spawn(move || {
                let links = [Link::new(up, seed), Link::new(down, seed ^ 0x5eed)];
                run(&near_fd, &far_fd, &timer, &w, &s, links);
            })?;
        Ok(Self { handle: Handle { shared, wake }, thread: Some(thread) })
    }

    /// New conditions for either direction (`None` keeps it), from the next packet on.
    pub fn set(&self, up: Option<Profile>, down: Option<Profile>) {
        self.handle.set(up, down);
    }

    /// What has happened so far.
    pub fn counters(&self) -> LinkCounters {
        self.handle.counters()
    }

    /// Serves a control socket at `path` for this link (see [`crate::control`]); it stops
    /// when the returned server is dropped.
    pub fn control(&self, path: &std::path::Path) -> io::Result<control::Server> {
        control::Server::start(path, Arc::new(self.handle.clone()))
    }
}

impl Drop for ConditionedLink {
    fn drop(&mut self) {
        lock(&self.handle.shared).stop = true;
        poke(&self.handle.wake);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn poke(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us by the kernel and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `/dev/net/tun` as `tun0` (IFF_TUN | IFF_NO_PI) from a thread inside `ns`, so the
/// device is created there.
fn open_tun(ns: &Namespace) -> io::Result<OwnedFd> {
    let opened = in_namespace(ns, || -> io::Result<OwnedFd> {
        let path = c"/dev/net/tun";
        // SAFETY: a NUL-terminated path; open(2) touches nothing else.
        let fd =
            unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        let fd = owned(fd)?;
        // struct ifreq: a 16-byte name, then the flags (a short) in a 24-byte union.
        let mut ifr = [0u8; 40];
        ifr[..4].copy_from_slice(b"tun0");
        let flags = i16::try_from(libc::IFF_TUN | libc::IFF_NO_PI).unwrap_or(0);
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `ifr` is large enough to hold.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    });
    match opened {
        Ok(result) => result,
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

fn configure(ns: &Namespace, v4: &str, v6: &str) -> io::Result<()> {
    let ip = |args: &[&str]| ns.ip(args).map(|_| ()).map_err(|e| io::Error::other(e.to_string()));
    ip(&["addr", "add", &format!("{v4}/24"), "dev", "tun0"])?;
    ip(&["addr", "add", &format!("{v6}/64"), "dev", "tun0", "nodad"])?;
    ip(&["link", "set", "tun0", "up"])?;
    // The link is each side's whole network: a default route over it, so a path monitor sees
    // a usable path and every destination crosses the conditioner.
    ip(&["route", "add", "default", "dev", "tun0"])?;
    ip(&["-6", "route", "add", "default", "dev", "tun0"])
}

/// The thread: poll, feed, deliver, repeat, until told to stop.
#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
fn run(
    near: &OwnedFd,
    far: &OwnedFd,
    timer: &OwnedFd,
    wake: &OwnedFd,
    shared: &Mutex<Shared>,
    mut links: [Link; 2],
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        arm(timer, links.iter().filter_map(Link::poll_timeout).min());
        let mut fds = [near, far, timer, wake].map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is a live array of 4 pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 4, -1) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
        let now = Instant::now();
        if fds[3].revents != 0 {
            drain(wake);
            let mut s = lock(shared);
            if s.stop {
                return;
            }
            if std::mem::take(&mut s.changed) {
                // The direction that did not change gets its own profile again: no effect.
                links[0].set_profile(now, s.profiles.0.clone());
                links[1].set_profile(now, s.profiles.1.clone());
            }
        }
        if fds[2].revents != 0 {
            drain(timer);
        }
        for (i, fd) in [near, far].into_iter().enumerate() {
            if fds[i].revents & libc::POLLIN != 0 {
                while let Some(n) = read(fd, &mut buf) {
                    links[i].handle_packet(now, buf[..n].to_vec());
                }
            }
        }
        for (link, out) in links.iter_mut().zip([far, near]) {
            link.handle_timeout(now);
            while let Some(packet) = link.poll_packet() {
                // SAFETY: writes `packet.len()` bytes from a live buffer to a TUN fd we own.
                unsafe { libc::write(out.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
            }
        }
        let mut s = lock(shared);
        s.counters = LinkCounters { up: links[0].counters(), down: links[1].counters() };
    }
}

/// One packet from a non-blocking TUN fd, or `None` when there is none.
fn read(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: reads at most `buf.len()` bytes into a live buffer from an fd we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().filter(|n| *n > 0)
}

fn drain(fd: &OwnedFd) {
    let mut eight = [0u8; 8];
    // SAFETY: reads 8 bytes into a live buffer (eventfd and timerfd hand out a u64).
    unsafe { libc::read(fd.as_raw_fd(), eight.as_mut_ptr().cast(), 8) };
}

/// Arms the timerfd to fire at `deadline` (relative to now), or disarms it.
#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
fn arm(timer: &OwnedFd, deadline: Option<Instant>) {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let value = match deadline {
        None => zero,
        Some(d) => {
            // At least 1 ns: a zero it_value would disarm the timer instead of firing it.
            let wait =
                d.saturating_duration_since(Instant::now()).max(std::time::Duration::from_nanos(1));
            libc::timespec {
                tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(wait.subsec_nanos()),
            }
        }
    };
    let spec = libc::itimerspec { it_interval: zero, it_value: value };
    // SAFETY: `spec` is a live itimerspec; the old value is not asked for.
    unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) };
}
