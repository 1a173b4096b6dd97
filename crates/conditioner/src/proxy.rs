//! The conditioner without root: see [`Proxy`].

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::control::{self, Conditioned};
use crate::link::{Counters, Link, LinkCounters, Loss, Profile, QueueLimit};

/// TCP faults, counted per connection. "Toward the client" is the down direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Reset the connection (RST to the client) once this many bytes have gone toward the
    /// client; 0 resets it as soon as it is accepted.
    pub reset_after: Option<u64>,
    /// Stop passing anything either way once this many bytes have gone toward the client,
    /// keeping the connection open; 0 accepts and never answers.
    pub stall_after: Option<u64>,
    /// A stalled connection is closed after this long; `None` holds it until the proxy stops.
    pub stall_close: Option<Duration>,
    /// How long a close (FIN), either way, is held before it is passed on.
    pub slow_close: Duration,
}

/// How a proxy behaves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where it listens; port 0 picks one.
    pub listen: SocketAddr,
    /// Client → server.
    pub up: Profile,
    /// Server → client.
    pub down: Profile,
    /// Resets, stalls and slow closes (TCP).
    pub faults: Faults,
    /// Seed of the loss and jitter draws; each connection or session derives its own.
    pub seed: u64,
}

impl ProxyConfig {
    /// Listening on 127.0.0.1 on a free port, with these profiles and no faults.
    pub fn new(up: Profile, down: Profile) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            up,
            down,
            faults: Faults::default(),
            seed: 1,
        }
    }
}

/// A running proxy; dropping it closes the listener and every connection through it.
///
/// The conditioner without root: a TCP or UDP proxy on loopback that puts the same
/// [`Link`](crate::Link) machine in each direction, for tests that cannot create
/// namespaces. Point the client at [`Proxy::local_addr`] instead of the server.
///
/// - **UDP** goes through the link datagram by datagram, exactly as on the TUN link: queue,
///   rate, delay with jitter, loss. Each client address is a session with its own upstream
///   socket, ended after a minute without traffic.
/// - **TCP** is a byte stream, so nothing may be lost: each read is cut into segments of at
///   most 1460 bytes when a rate is set, the segments go through the link without loss, and
///   the queue limit becomes back-pressure (the proxy stops reading while that many bytes are
///   inside the link) instead of drops. Rates count payload bytes.
/// - **Faults** ([`Faults`], TCP): a reset after so many bytes toward the client, a stall
///   (nothing more passes either way, so the client's timeout has to fire), and a slow close
///   (a FIN is held before it is passed on).
///
/// The proxy runs on its own thread with its own single-threaded tokio runtime, so it works
/// the same under a synchronous test and beside an async one; its timers are tokio's, with
/// millisecond resolution (the TUN link's timerfd thread is the precise one). Conditions
/// change mid-run through [`Proxy::set`] or a control socket ([`Proxy::control`]), from the
/// next segment or datagram on; faults change for the connections accepted after.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A TCP proxy to `target`.
    pub fn tcp(target: SocketAddr, config: ProxyConfig) -> io::Result<Self> {
        let listener = StdTcpListener::bind(config.listen).map_err(|e| bind_error(&config, &e))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Self::spawn(addr, &config, move |handle| async move {
            if let Ok(listener) = TcpListener::from_std(listener) {
                serve_tcp(listener, target, handle).await;
            }
        })
    }

    /// A UDP proxy to `target`.
    pub fn udp(target: SocketAddr, config: ProxyConfig) -> io::Result<Self> {
        let socket = StdUdpSocket::bind(config.listen).map_err(|e| bind_error(&config, &e))?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        Self::spawn(addr, &config, move |handle| async move {
            if let Ok(socket) = UdpSocket::from_std(socket) {
                serve_udp(Arc::new(socket), target, handle).await;
            }
        })
    }

    fn spawn<F, Fut>(addr: SocketAddr, config: &ProxyConfig, serve: F) -> io::Result<Self>
    where
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let handle = Handle {
            profiles: Arc::new(watch::Sender::new((config.up.clone(), config.down.clone()))),
            faults: Arc::new(Mutex::new(config.faults.clone())),
            counters: Arc::new(Mutex::new(LinkCounters::default())),
            seed: config.seed,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let h = handle.clone();
        let thread = std::thread::Builder::new().name("nw-proxy".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = serve(h) => {}
                }
            });
            // Dropping the runtime drops every connection's task, and with it its sockets.
        })?;
        Ok(Self { addr, handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// New profiles for either direction (`None` keeps it), from the next segment or datagram.
    pub fn set(&self, up: Option<Profile>, down: Option<Profile>) {
        self.handle.set(up, down);
    }

    /// New faults, for connections accepted from now on.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.handle.faults) = faults;
    }

    /// Both directions' counters, summed over every connection or session so far.
    pub fn counters(&self) -> LinkCounters {
        self.handle.counters()
    }

    /// Serves a control socket at `path` for this proxy (see [`crate::control`]).
    pub fn control(&self, path: &std::path::Path) -> io::Result<control::Server> {
        control::Server::start(path, Arc::new(self.handle.clone()))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_error(config: &ProxyConfig, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("the proxy cannot listen on {}: {e}", config.listen))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the proxy's tasks and its controllers share.
#[derive(Debug, Clone)]
struct Handle {
    profiles: Arc<watch::Sender<(Profile, Profile)>>,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Mutex<LinkCounters>>,
    seed: u64,
}

impl Conditioned for Handle {
    fn profiles(&self) -> (Profile, Profile) {
        self.profiles.borrow().clone()
    }

    fn set(&self, up: Option<Profile>, down: Option<Profile>) {
        self.profiles.send_modify(|(u, d)| {
            if let Some(p) = up {
                *u = p;
            }
            if let Some(p) = down {
                *d = p;
            }
        });
    }

    fn counters(&self) -> LinkCounters {
        *lock(&self.counters)
    }
}

impl Handle {
    /// Adds what a link did since `last` to the direction's totals.
    fn tally(&self, up: bool, link: &Link, last: &mut Counters) {
        let now = link.counters();
        if now == *last {
            return;
        }
        let mut all = lock(&self.counters);
        let total = if up { &mut all.up } else { &mut all.down };
        total.enqueued += now.enqueued - last.enqueued;
        total.dropped_queue += now.dropped_queue - last.dropped_queue;
        total.dropped_loss += now.dropped_loss - last.dropped_loss;
        total.delivered += now.delivered - last.delivered;
        total.max_queue_packets = total.max_queue_packets.max(now.max_queue_packets);
        total.max_queue_bytes = total.max_queue_bytes.max(now.max_queue_bytes);
        *last = now;
    }

    /// Connection or session `n`'s seed.
    fn seed(&self, n: u64) -> u64 {
        self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

#[allow(clippy::disallowed_methods, reason = "the proxy is a driver: it reads the clock")]
fn now() -> Instant {
    Instant::now()
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// A TCP segment's payload on a 1500-byte path (RFC 879: MSS = MTU − 40).
const MSS: usize = 1460;

async fn serve_tcp(listener: TcpListener, target: SocketAddr, handle: Handle) {
    let mut n = 0u64;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors, most likely: wait instead of spinning.
                until(Some(now() + Duration::from_millis(10))).await;
                continue;
            }
        };
        n += 1;
        let faults = lock(&handle.faults).clone();
        tokio::spawn(connection(client, target, handle.clone(), faults, handle.seed(n)));
    }
}

/// A fault that ended a connection's forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Reset,
    Stall,
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    handle: Handle,
    faults: Faults,
    seed: u64,
) {
    let budget = [(faults.reset_after, Fault::Reset), (faults.stall_after, Fault::Stall)]
        .into_iter()
        .filter_map(|(bytes, fault)| bytes.map(|b| (b, fault)))
        .min_by_key(|(bytes, _)| *bytes);
    let fault = if let Some((0, fault)) = budget {
        Some(fault)
    } else {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            // The server refused: so does the proxy, with a reset.
            let _ = client.set_zero_linger();
            return;
        };
        let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
        let (stop, stopped) = watch::channel(false);
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let up = Pump {
            up: true,
            handle: &handle,
            budget: None,
            slow_close: faults.slow_close,
            stop: &stop,
        };
        let down = Pump { up: false, budget, ..up };
        let (a, b) = tokio::join!(
            up.run(&mut client_read, &mut upstream_write, seed, stopped.clone()),
            down.run(&mut upstream_read, &mut client_write, seed ^ 0x5eed, stopped),
        );
        a.or(b)
    };
    match fault {
        Some(Fault::Reset) => {
            let _ = client.set_zero_linger();
        }
        Some(Fault::Stall) => match faults.stall_close {
            Some(after) => until(Some(now() + after)).await,
            None => std::future::pending().await,
        },
        None => {}
    }
}

/// One direction of a TCP connection.
#[derive(Clone, Copy)]
struct Pump<'a> {
    up: bool,
    handle: &'a Handle,
    /// Bytes to pass before a fault (toward the client only).
    budget: Option<(u64, Fault)>,
    slow_close: Duration,
    /// Raised when either direction hits a fault or an error: both stop.
    stop: &'a watch::Sender<bool>,
}

impl Pump<'_> {
    fn pick(&self, profiles: &(Profile, Profile)) -> Profile {
        if self.up { profiles.0.clone() } else { profiles.1.clone() }
    }

    async fn run<R, W>(
        self,
        from: &mut R,
        to: &mut W,
        seed: u64,
        mut stopped: watch::Receiver<bool>,
    ) -> Option<Fault>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut profiles = self.handle.profiles.subscribe();
        let profile = self.pick(&profiles.borrow_and_update());
        let mut room = room_of(&profile);
        let mut segment = segment_of(&profile);
        let mut link = Link::new(stream(profile), seed);
        let mut last = Counters::default();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut eof, mut passed) = (false, 0u64);
        loop {
            let free = room.saturating_sub(link.held_bytes()).min(buf.len());
            tokio::select! {
                read = from.read(&mut buf[..free.max(1)]), if !eof && free > 0 => match read {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => {
                        let t = now();
                        for piece in buf[..n].chunks(segment) {
                            link.handle_packet(t, piece.to_vec());
                        }
                    }
                },
                () = until(link.poll_timeout()) => link.handle_timeout(now()),
                Ok(()) = profiles.changed() => {
                    let profile = self.pick(&profiles.borrow_and_update());
                    (room, segment) = (room_of(&profile), segment_of(&profile));
                    link.set_profile(now(), stream(profile));
                }
                _ = stopped.changed() => return None,
            }
            // Counted before the bytes are passed on, so a reader that has them sees them
            // counted.
            self.handle.tally(self.up, &link, &mut last);
            while let Some(packet) = link.poll_packet() {
                let mut out: &[u8] = &packet;
                let mut hit = None;
                if let Some((limit, fault)) = self.budget {
                    let left = usize::try_from(limit.saturating_sub(passed)).unwrap_or(usize::MAX);
                    if out.len() >= left {
                        (out, hit) = (&out[..left], Some(fault));
                    }
                }
                let wrote = to.write_all(out).await.and(to.flush().await);
                passed += out.len() as u64;
                if wrote.is_err() || hit.is_some() {
                    self.stop.send_replace(true);
                    return hit;
                }
            }
            if eof && link.held_bytes() == 0 {
                until(Some(now() + self.slow_close)).await;
                let _ = to.shutdown().await;
                return None;
            }
        }
    }
}

/// A stream loses nothing and drops nothing: no loss, and a queue that never fills (the
/// proxy pushes back by not reading instead, see [`room_of`]).
fn stream(profile: Profile) -> Profile {
    Profile { loss: Loss::None, queue: QueueLimit::Bytes(usize::MAX), ..profile }
}

/// How many bytes a stream lets into the link before it stops reading.
fn room_of(profile: &Profile) -> usize {
    match profile.queue {
        QueueLimit::Packets(n) => n.saturating_mul(MSS),
        QueueLimit::Bytes(n) => n,
    }
    .max(MSS)
}

/// Reads are cut to segments when a rate is set, so the serializer paces them as a link
/// would; without one, a whole read passes as one.
fn segment_of(profile: &Profile) -> usize {
    if profile.rate_bps.is_some() { MSS } else { usize::MAX }
}

/// A UDP session ends after this long without a datagram either way.
const UDP_IDLE: Duration = Duration::from_secs(60);

async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddr, handle: Handle) {
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut n = 0u64;
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else { continue };
        let live = sessions.get(&from).filter(|tx| !tx.is_closed()).cloned();
        let tx = match live {
            Some(tx) => tx,
            None => {
                sessions.retain(|_, tx| !tx.is_closed());
                n += 1;
                let (tx, rx) = mpsc::channel(1024);
                let session =
                    Session { socket: socket.clone(), client: from, handle: handle.clone() };
                tokio::spawn(session.run(target, rx, handle.seed(n)));
                sessions.insert(from, tx.clone());
                tx
            }
        };
        // A full channel drops the datagram, as a full socket buffer would.
        let _ = tx.try_send(buf[..len].to_vec());
    }
}

/// One client address's datagrams, both ways.
struct Session {
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    handle: Handle,
}

impl Session {
    async fn run(self, target: SocketAddr, mut from_client: mpsc::Receiver<Vec<u8>>, seed: u64) {
        let any = if target.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let Ok(upstream) = UdpSocket::bind(any).await else { return };
        if upstream.connect(target).await.is_err() {
            return;
        }
        let mut profiles = self.handle.profiles.subscribe();
        let (up, down) = profiles.borrow_and_update().clone();
        let mut links = [Link::new(up, seed), Link::new(down, seed ^ 0x5eed)];
        let mut last = [Counters::default(); 2];
        let mut buf = vec![0u8; 65_536];
        let mut active = now();
        loop {
            let deadline = links.iter().filter_map(Link::poll_timeout).min();
            tokio::select! {
                datagram = from_client.recv() => match datagram {
                    Some(d) => {
                        active = now();
                        links[0].handle_packet(active, d);
                    }
                    None => return,
                },
                got = upstream.recv(&mut buf) => {
                    // An ICMP error (nothing listening) shows up here; it is not traffic.
                    if let Ok(n) = got {
                        active = now();
                        links[1].handle_packet(active, buf[..n].to_vec());
                    }
                }
                () = until(deadline) => {
                    let t = now();
                    links.iter_mut().for_each(|l| l.handle_timeout(t));
                }
                Ok(()) = profiles.changed() => {
                    let (up, down) = profiles.borrow_and_update().clone();
                    let t = now();
                    links[0].set_profile(t, up);
                    links[1].set_profile(t, down);
                }
                () = until(Some(active + UDP_IDLE)) => return,
            }
            for (i, link) in links.iter().enumerate() {
                self.handle.tally(i == 0, link, &mut last[i]);
            }
            while let Some(d) = links[0].poll_packet() {
                let _ = upstream.send(&d).await;
            }
            while let Some(d) = links[1].poll_packet() {
                let _ = self.socket.send_to(&d, self.client).await;
            }
        }
    }
}
