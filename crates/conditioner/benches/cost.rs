//! Benchmark: what the conditioner itself costs, with nothing configured (no delay, no rate,
//! no loss), printed next to a direct veth link between two namespaces in the same run; and
//! the loopback proxy next to a direct loopback connection.
//!
//! - added latency: UDP ping-pong round trips (median and 99th percentile);
//! - maximum packet rate: 64-byte UDP datagrams sent as fast as one thread can, counted where
//!   they arrive;
//! - bulk TCP goodput.
//!
//! Rounds alternate between the links; figures are medians over the rounds, with ratios.
//! Run: `cargo bench -p nw-conditioner --bench cost` (as root). `NW_BENCH_SMOKE=1` does one
//! short round.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark program"
)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nw_conditioner::Profile;
use nw_conditioner::{ConditionedLink, FAR_V4};
use nw_conditioner::{Proxy, ProxyConfig};
use nw_lab::{Lab, Namespace, in_namespace};

struct Settings {
    rounds: usize,
    probes: usize,
    blast: Duration,
}

/// One link under test: where the client runs, where the server runs, the server's address.
struct Side<'a> {
    name: &'static str,
    near: &'a Namespace,
    far: &'a Namespace,
    far_ip: IpAddr,
}

#[derive(Default)]
struct Figures {
    rtt_median_us: Vec<f64>,
    rtt_p99_us: Vec<f64>,
    pps: Vec<f64>,
    gbps: Vec<f64>,
}

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let settings = if smoke {
        Settings { rounds: 1, probes: 200, blast: Duration::from_millis(300) }
    } else {
        Settings { rounds: 5, probes: 5000, blast: Duration::from_secs(1) }
    };
    let lab = Lab::new().unwrap_or_else(|e| panic!("the benchmark needs the lab (root): {e}"));
    let pair = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let near = lab.namespace("near").unwrap();
    let far = lab.namespace("far").unwrap();
    let none = Profile::default();
    let _link = ConditionedLink::start(&near, &far, none.clone(), none, 1)
        .unwrap_or_else(|e| panic!("cannot build the conditioned link: {e}"));
    let sides = [
        Side { name: "veth (direct)", near: &pair.cli, far: &pair.srv, far_ip: srv_ip() },
        Side { name: "conditioner (TUN)", near: &near, far: &far, far_ip: FAR_V4.parse().unwrap() },
    ];
    let mut figures = [Figures::default(), Figures::default()];
    for _ in 0..settings.rounds {
        for (side, f) in sides.iter().zip(figures.iter_mut()) {
            let rtts = udp_round_trips(side, settings.probes);
            f.rtt_median_us.push(percentile(&rtts, 0.5));
            f.rtt_p99_us.push(percentile(&rtts, 0.99));
            f.pps.push(packet_rate(side, settings.blast));
            f.gbps.push(tcp_goodput(side, settings.blast));
        }
    }
    println!(
        "conditioner cost, nothing configured: {} rounds alternating, medians ({} probes, {:?} blasts)",
        settings.rounds, settings.probes, settings.blast
    );
    println!(
        "  {:20} {:>14} {:>14} {:>16} {:>12}",
        "link", "RTT median µs", "RTT p99 µs", "max packets/s", "TCP Gbit/s"
    );
    for (side, f) in sides.iter().zip(&figures) {
        println!(
            "  {:20} {:>14.1} {:>14.1} {:>16.0} {:>12.2}",
            side.name,
            median(&f.rtt_median_us),
            median(&f.rtt_p99_us),
            median(&f.pps),
            median(&f.gbps)
        );
    }
    let (v, c) = (&figures[0], &figures[1]);
    println!(
        "  conditioner adds {:.1} µs per round trip (two crossings); packet rate {:.2}× veth's; TCP {:.2}× veth's",
        median(&c.rtt_median_us) - median(&v.rtt_median_us),
        median(&c.pps) / median(&v.pps),
        median(&c.gbps) / median(&v.gbps)
    );
    proxy_cost(&settings);
}

fn srv_ip() -> IpAddr {
    IpAddr::V4(nw_lab::addr::SRV_V4)
}

fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "an index")]
    v[i as usize]
}

fn median(xs: &[f64]) -> f64 {
    percentile(xs, 0.5)
}

/// A bigger receive buffer than rmem_max allows (root may): a burst is counted, not dropped
/// by the receiving socket.
fn big_receive_buffer(socket: &UdpSocket) {
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
        );
    }
}

fn udp_round_trips(side: &Side<'_>, probes: usize) -> Vec<f64> {
    let ip = side.far_ip;
    let server = in_namespace(side.far, move || UdpSocket::bind((ip, 0))).unwrap().unwrap();
    let addr = server.local_addr().unwrap();
    server.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let client = in_namespace(side.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    client.connect(addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut rtts = Vec::with_capacity(probes);
    let mut buf = [0u8; 64];
    for i in 0..probes {
        let t = Instant::now();
        client.send(&i.to_be_bytes()).unwrap();
        if client.recv(&mut buf).is_ok() {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    echo.join().unwrap();
    rtts
}

/// Datagrams per second that arrive while one thread sends 64-byte datagrams for `blast`.
fn packet_rate(side: &Side<'_>, blast: Duration) -> f64 {
    let ip = side.far_ip;
    let server = in_namespace(side.far, move || UdpSocket::bind((ip, 0))).unwrap().unwrap();
    big_receive_buffer(&server);
    let addr = server.local_addr().unwrap();
    server.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let counter = std::thread::spawn(move || {
        let (mut n, mut buf) = (0u64, [0u8; 64]);
        while server.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let client = in_namespace(side.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    client.connect(addr).unwrap();
    let datagram = [0u8; 64];
    let t = Instant::now();
    while t.elapsed() < blast {
        for _ in 0..64 {
            // A full device queue refuses some: that is the limit being measured.
            let _ = client.send(&datagram);
        }
    }
    let sent_for = t.elapsed();
    counter.join().unwrap() as f64 / sent_for.as_secs_f64()
}

/// Gbit/s of one TCP connection sending as fast as it can for `blast`.
fn tcp_goodput(side: &Side<'_>, blast: Duration) -> f64 {
    let ip = side.far_ip;
    let listener = in_namespace(side.far, move || TcpListener::bind((ip, 0))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let (mut total, mut buf) = (0u64, vec![0u8; 256 * 1024]);
        let t = Instant::now();
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9
    });
    let mut conn = in_namespace(side.near, move || TcpStream::connect(addr)).unwrap().unwrap();
    let chunk = vec![0u8; 256 * 1024];
    let t = Instant::now();
    while t.elapsed() < blast {
        conn.write_all(&chunk).unwrap();
    }
    drop(conn);
    sink.join().unwrap()
}

/// The loopback proxy with nothing configured, next to a direct loopback connection: TCP
/// request/response round trips and bulk goodput.
fn proxy_cost(settings: &Settings) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let direct = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            std::thread::spawn(move || serve(conn));
        }
    });
    let proxy =
        Proxy::tcp(direct, ProxyConfig::new(Profile::default(), Profile::default())).unwrap();
    let targets = [("loopback (direct)", direct), ("proxy", proxy.local_addr())];
    let mut rtts = [Vec::new(), Vec::new()];
    let mut gbps = [Vec::new(), Vec::new()];
    for _ in 0..settings.rounds {
        for (i, (_, addr)) in targets.iter().enumerate() {
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.set_nodelay(true).unwrap();
            let mut all = Vec::new();
            let mut buf = [0u8; 1];
            for _ in 0..settings.probes {
                let t = Instant::now();
                conn.write_all(b"p").unwrap();
                conn.read_exact(&mut buf).unwrap();
                all.push(t.elapsed().as_secs_f64() * 1e6);
            }
            rtts[i].push(median(&all));
            gbps[i].push(pull(*addr, settings.blast));
        }
    }
    println!("loopback proxy cost, nothing configured (TCP)");
    println!("  {:20} {:>14} {:>12}", "path", "RTT median µs", "Gbit/s");
    for (i, (name, _)) in targets.iter().enumerate() {
        println!("  {:20} {:>14.1} {:>12.2}", name, median(&rtts[i]), median(&gbps[i]));
    }
    println!(
        "  the proxy adds {:.1} µs per round trip; goodput {:.2}× direct",
        median(&rtts[1]) - median(&rtts[0]),
        median(&gbps[1]) / median(&gbps[0])
    );
    stop.store(true, Ordering::Relaxed);
}

/// The test server: `p` → one byte back; `b` → bytes until the client closes.
fn serve(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 1];
    while conn.read_exact(&mut buf).is_ok() {
        if buf[0] == b'b' {
            let chunk = vec![0u8; 256 * 1024];
            while conn.write_all(&chunk).is_ok() {}
            return;
        }
        if conn.write_all(&buf).is_err() {
            return;
        }
    }
}

/// Gbit/s pulled from `addr` (asking with `b`) for `blast`.
fn pull(addr: SocketAddr, blast: Duration) -> f64 {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"b").unwrap();
    let (mut total, mut buf) = (0u64, vec![0u8; 256 * 1024]);
    let t = Instant::now();
    while t.elapsed() < blast {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    total as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9
}
