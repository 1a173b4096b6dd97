//! The proxy mode, without root: delay and rate over TCP with the bytes intact, loss and
//! delay over UDP, the TCP faults (reset, stall, slow close), changes through the control
//! socket. Everything runs on 127.0.0.1; timed, so serialized with the namespace scenarios.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use nw_conditioner::control::{self, Patch, Request};
use nw_conditioner::{Faults, Proxy, ProxyConfig};
use nw_conditioner::{Loss, Profile, QueueLimit};

const MS: Duration = Duration::from_millis(1);

fn delay(ms: u64) -> Profile {
    Profile { delay: Duration::from_millis(ms), ..Profile::default() }
}

/// A TCP server on loopback that serves each connection with `serve`, on its own thread.
fn tcp_server(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}

fn echo(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// 3,000,000 bytes of a pattern, then a close.
fn pattern(i: usize) -> u8 {
    u8::try_from(i * 7 % 251).unwrap()
}

const BULK: usize = 3_000_000;

fn bulk(mut conn: TcpStream) {
    let data: Vec<u8> = (0..BULK).map(pattern).collect();
    let _ = conn.write_all(&data);
}

fn connect(proxy: &Proxy) -> TcpStream {
    let conn = TcpStream::connect(proxy.local_addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn
}

/// Reads until EOF or an error; returns the bytes and how the read ended.
fn read_all(conn: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 65_536]);
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

fn round_trip(conn: &mut TcpStream) -> f64 {
    let t = Instant::now();
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    t.elapsed().as_secs_f64() * 1e3
}

#[test]
fn proxy_tcp_delay_adds_a_round_trip_to_each_exchange() {
    let proxy = Proxy::tcp(tcp_server(echo), ProxyConfig::new(delay(25), delay(25))).unwrap();
    let mut conn = connect(&proxy);
    let rtts = || {
        let rtts: Vec<f64> = (0..5).map(|_| round_trip(&mut conn)).collect();
        eprintln!("proxy 2 × 25 ms: round trips {rtts:.1?} ms");
        rtts
    };
    let each_in_band = |rtts: &Vec<f64>| rtts.iter().all(|rtt| (50.0..=60.0).contains(rtt));
    if let Err(missed) = nw_lab::one_of_three(rtts, each_in_band) {
        panic!("want 50 ms (+ timer slack) each time, got {missed:.1?}");
    }
    let c = proxy.counters();
    assert!(c.up.delivered >= 5 && c.down.delivered >= 5, "{c:?}");
}

#[test]
fn proxy_tcp_rate_paces_the_stream_and_keeps_every_byte_in_order() {
    let down = Profile {
        rate_bps: Some(10_000_000),
        delay: 5 * MS,
        jitter: 2 * MS,
        queue: QueueLimit::Packets(50),
        ..Profile::default()
    };
    let proxy = Proxy::tcp(tcp_server(bulk), ProxyConfig::new(delay(5), down)).unwrap();
    let rate = || {
        let mut conn = connect(&proxy);
        let t = Instant::now();
        let (got, end) = read_all(&mut conn);
        let took = t.elapsed();
        #[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
        let mbps = got.len() as f64 * 8.0 / took.as_secs_f64() / 1e6;
        eprintln!("proxy 10 Mbit/s: {} bytes in {took:?}: {mbps:.2} Mbit/s", got.len());
        assert_eq!(end, None, "a clean close");
        assert_eq!(got.len(), BULK);
        assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)), "the bytes arrive intact");
        mbps
    };
    if let Err(missed) = nw_lab::one_of_three(rate, |m| (9.0..=10.2).contains(m)) {
        panic!("want 9–10 Mbit/s, got {missed:.2?}");
    }
    let c = proxy.counters().down;
    assert_eq!((c.dropped_queue, c.dropped_loss), (0, 0), "a stream drops nothing: {c:?}");
    assert!(c.max_queue_bytes <= 50 * 1460, "the queue pushes back instead of growing: {c:?}");
}

#[test]
fn proxy_tcp_reset_after_so_many_bytes() {
    let faults = Faults { reset_after: Some(100_000), ..Faults::default() };
    let config = ProxyConfig { faults, ..ProxyConfig::new(Profile::default(), Profile::default()) };
    let proxy = Proxy::tcp(tcp_server(bulk), config).unwrap();
    let (got, end) = read_all(&mut connect(&proxy));
    eprintln!("proxy reset after 100,000 bytes: read {} bytes, then {end:?}", got.len());
    assert_eq!(end, Some(ErrorKind::ConnectionReset));
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)));
    // 0: reset as soon as it is accepted.
    proxy.set_faults(Faults { reset_after: Some(0), ..Faults::default() });
    let (got, end) = read_all(&mut connect(&proxy));
    assert_eq!((got.len(), end), (0, Some(ErrorKind::ConnectionReset)));
}

#[test]
fn proxy_tcp_a_stall_leaves_the_client_to_its_timeout() {
    let faults =
        Faults { stall_after: Some(1000), stall_close: Some(600 * MS), ..Faults::default() };
    let config = ProxyConfig { faults, ..ProxyConfig::new(Profile::default(), Profile::default()) };
    let proxy = Proxy::tcp(tcp_server(bulk), config).unwrap();
    let mut conn = connect(&proxy);
    conn.set_read_timeout(Some(200 * MS)).unwrap();
    let t = Instant::now();
    let (got, end) = read_all(&mut conn);
    assert_eq!(got.len(), 1000);
    assert_eq!(end, Some(ErrorKind::WouldBlock), "the client's own timeout fires");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (more, end) = read_all(&mut conn);
    let closed = t.elapsed();
    eprintln!("proxy stall after 1,000 bytes: closed after {closed:?}");
    assert_eq!((more.len(), end), (0, None), "then the proxy closes it");
    assert!(closed >= 550 * MS, "{closed:?}");
    // 0: accepted, and never a byte.
    proxy.set_faults(Faults { stall_after: Some(0), ..Faults::default() });
    let mut conn = connect(&proxy);
    conn.set_read_timeout(Some(300 * MS)).unwrap();
    let (got, end) = read_all(&mut conn);
    assert_eq!((got.len(), end), (0, Some(ErrorKind::WouldBlock)));
}

#[test]
fn proxy_tcp_slow_close_holds_the_fin() {
    let faults = Faults { slow_close: 400 * MS, ..Faults::default() };
    let config = ProxyConfig { faults, ..ProxyConfig::new(Profile::default(), Profile::default()) };
    let server = tcp_server(|mut conn| {
        let _ = conn.write_all(b"bye");
        let _ = conn.shutdown(Shutdown::Both);
    });
    let proxy = Proxy::tcp(server, config).unwrap();
    let mut conn = connect(&proxy);
    let t = Instant::now();
    let mut buf = [0u8; 3];
    conn.read_exact(&mut buf).unwrap();
    let data_at = t.elapsed();
    let (rest, end) = read_all(&mut conn);
    let fin_at = t.elapsed();
    eprintln!("proxy slow close 400 ms: data after {data_at:?}, FIN after {fin_at:?}");
    assert_eq!((&buf, rest.len(), end), (b"bye", 0, None));
    assert!(data_at < 200 * MS, "the data is not held: {data_at:?}");
    assert!(fin_at >= 390 * MS, "the FIN is: {fin_at:?}");
}

#[test]
fn proxy_tcp_to_a_closed_port_resets_the_client() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy =
        Proxy::tcp(closed, ProxyConfig::new(Profile::default(), Profile::default())).unwrap();
    let (got, end) = read_all(&mut connect(&proxy));
    assert_eq!((got.len(), end), (0, Some(ErrorKind::ConnectionReset)));
}

/// A UDP echo on loopback, on its own thread.
fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

#[test]
fn proxy_udp_loses_and_delays_datagrams_as_the_link_does() {
    let up = Profile { loss: Loss::Uniform { p: 0.10 }, delay: 10 * MS, ..Profile::default() };
    let proxy =
        Proxy::udp(udp_echo(), ProxyConfig { seed: 5, ..ProxyConfig::new(up, delay(10)) }).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(proxy.local_addr()).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let n = 1000u32;
    let (mut got, mut rtts) = (0u32, Vec::new());
    let counter = socket.try_clone().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(len) = counter.recv(&mut buf) {
            got.push((buf[..len].to_vec(), Instant::now()));
        }
        got
    });
    let mut sent_at = Vec::new();
    for i in 0..n {
        sent_at.push(Instant::now());
        socket.send(&i.to_be_bytes()).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(MS); // no burst that overflows a socket buffer
        }
    }
    for (data, at) in receiver.join().unwrap() {
        let i = u32::from_be_bytes(data[..4].try_into().unwrap());
        rtts.push((at - sent_at[i as usize]).as_secs_f64() * 1e3);
        got += 1;
    }
    let lost = 1.0 - f64::from(got) / f64::from(n);
    rtts.sort_by(f64::total_cmp);
    let median = rtts[rtts.len() / 2];
    eprintln!(
        "proxy UDP 10 % loss, 2 × 10 ms: {got} of {n} back, loss {:.1} %, RTT median {median:.1} ms",
        lost * 100.0
    );
    assert!((0.07..=0.13).contains(&lost), "want 10 ± 3 %, got {:.1} %", lost * 100.0);
    assert!((20.0..=30.0).contains(&median), "want 20 ms, got {median:.1}");
    let c = proxy.counters();
    assert_eq!(c.up.enqueued, u64::from(n), "{c:?}");
    assert_eq!(c.up.dropped_loss + c.up.delivered, u64::from(n), "{c:?}");
    assert_eq!(c.down.delivered, u64::from(got), "{c:?}");
}

#[test]
fn proxy_conditions_change_through_the_control_socket_from_the_next_exchange() {
    let proxy = Proxy::tcp(tcp_server(echo), ProxyConfig::new(delay(0), delay(0))).unwrap();
    let dir = std::env::temp_dir().join(format!("nw-it-proxy-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let server = proxy.control(&path).unwrap();
    let mut conn = connect(&proxy);
    let set = |delay_us| {
        let patch = Patch { delay_us: Some(delay_us), ..Patch::default() };
        control::request(&path, &Request::Set { up: patch.clone(), down: patch }).unwrap();
    };
    let change = || {
        set(0);
        let before = round_trip(&mut conn);
        set(30_000);
        let after = round_trip(&mut conn);
        eprintln!("proxy change through the control socket: {before:.2} ms, then {after:.2} ms");
        (before, after)
    };
    let from_the_next =
        |&(before, after): &(f64, f64)| before < 10.0 && (60.0..=70.0).contains(&after);
    if let Err(missed) = nw_lab::one_of_three(change, from_the_next) {
        panic!("want under 10 ms, then 60–70 ms from the next exchange; got {missed:.2?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
