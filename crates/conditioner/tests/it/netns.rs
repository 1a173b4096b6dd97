//! Conditioner scenarios (issue 6's done-means): 2 × 50 ms is a 100 ms round trip; 10 % loss
//! measures 10 %; 10 Mbit/s gives 9–10 Mbit/s of goodput; a change of conditions through the
//! control socket takes effect from the next packet; teardown leaves no device behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use nw_conditioner::control::{self, Patch, Request};
use nw_conditioner::{ConditionedLink, FAR_V4};
use nw_conditioner::{Loss, Profile, QueueLimit};
use nw_lab::{Lab, Namespace, in_namespace};

const MS: Duration = Duration::from_millis(1);

struct Scene {
    _lab: Lab,
    near: Namespace,
    far: Namespace,
}

fn scene() -> Scene {
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let near = lab.namespace("near").unwrap();
    let far = lab.namespace("far").unwrap();
    Scene { _lab: lab, near, far }
}

fn far(port: u16) -> SocketAddr {
    SocketAddr::new(FAR_V4.parse().unwrap(), port)
}

/// A UDP echo on the far end, on its own thread, for as long as the test runs.
fn udp_echo(s: &Scene) {
    let socket = in_namespace(&s.far, || UdpSocket::bind(far(7))).unwrap().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
}

/// Round trips of `n` UDP probes from the near end, in ms (lost ones left out).
fn pings(s: &Scene, n: usize) -> Vec<f64> {
    let socket = in_namespace(&s.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let sent = Instant::now();
        socket.send_to(&u32::try_from(i).unwrap().to_be_bytes(), far(7)).unwrap();
        let mut buf = [0u8; 16];
        if socket.recv_from(&mut buf).is_ok() {
            out.push(sent.elapsed().as_secs_f64() * 1e3);
        }
    }
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn delay(ms: u64) -> Profile {
    Profile { delay: Duration::from_millis(ms), ..Profile::default() }
}

#[test]
fn netns_two_times_50ms_is_a_100ms_round_trip() {
    let s = scene();
    let link = ConditionedLink::start(&s.near, &s.far, delay(50), delay(50), 1).unwrap();
    udp_echo(&s);
    let measured = nw_lab::one_of_three(
        || {
            let rtts = pings(&s, 15);
            let m = median(rtts.clone());
            eprintln!("conditioner 2 × 50 ms: RTT median {m:.2} ms over {} probes", rtts.len());
            (rtts.len(), m)
        },
        |&(n, m)| n == 15 && (95.0..=105.0).contains(&m),
    );
    if let Err(missed) = measured {
        panic!("want 15 probes at 100 ± 5 ms, got (probes, median) {missed:.2?}");
    }
    // The kernel's own IPv6 chatter (router and listener solicitations) crosses the link too.
    let c = link.counters();
    assert!(c.up.delivered >= 15 && c.down.delivered >= 15, "{c:?}");
}

#[test]
fn netns_ten_percent_loss_measures_ten_percent() {
    let s = scene();
    let up = Profile { loss: Loss::Uniform { p: 0.10 }, ..Profile::default() };
    let link = ConditionedLink::start(&s.near, &s.far, up, Profile::default(), 7).unwrap();
    let receiver = in_namespace(&s.far, || UdpSocket::bind(far(9))).unwrap().unwrap();
    receiver.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let sender = in_namespace(&s.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    let n = 2000;
    let counter = std::thread::spawn(move || {
        let (mut got, mut buf) = (0u32, [0u8; 64]);
        while receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    for i in 0..n {
        sender.send_to(&u32::try_from(i).unwrap().to_be_bytes(), far(9)).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(MS); // no burst bigger than the queue
        }
    }
    let got = counter.join().unwrap();
    let lost = 1.0 - f64::from(got) / f64::from(n);
    eprintln!("conditioner 10 % loss: {got} of {n} arrived, loss {:.1} %", lost * 100.0);
    assert!((0.07..=0.13).contains(&lost), "want 10 ± 3 %, got {:.1} %", lost * 100.0);
    let c = link.counters();
    assert_eq!(c.up.enqueued, c.up.delivered + c.up.dropped_loss, "{c:?}");
    assert_eq!(c.up.dropped_queue, 0, "{c:?}");
    assert!(c.up.delivered >= u64::from(got), "{c:?}");
}

#[test]
fn netns_ten_megabits_give_nine_to_ten_megabits_of_goodput() {
    let s = scene();
    let up = Profile {
        rate_bps: Some(10_000_000),
        delay: 5 * MS,
        queue: QueueLimit::Packets(100),
        ..Profile::default()
    };
    let _link = ConditionedLink::start(&s.near, &s.far, up, delay(5), 3).unwrap();
    let mut port = 5000;
    let goodput = || {
        port += 1;
        let here = port;
        let listener = in_namespace(&s.far, move || TcpListener::bind(far(here))).unwrap().unwrap();
        let sink = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let (mut total, mut buf) = (0usize, vec![0u8; 65_536]);
            let mut first = None;
            loop {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                total += n;
            }
            (total, first.unwrap().elapsed())
        });
        let bytes = 6_000_000usize;
        let mut conn =
            in_namespace(&s.near, move || TcpStream::connect(far(here))).unwrap().unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            conn.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
        drop(conn);
        let (total, took) = sink.join().unwrap();
        #[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
        let mbps = total as f64 * 8.0 / took.as_secs_f64() / 1e6;
        eprintln!("conditioner 10 Mbit/s: {total} bytes in {took:?}: goodput {mbps:.2} Mbit/s");
        mbps
    };
    if let Err(missed) = nw_lab::one_of_three(goodput, |m| (9.0..=10.0).contains(m)) {
        panic!("want 9–10 Mbit/s, got {missed:.2?}");
    }
}

#[test]
fn netns_a_change_through_the_control_socket_takes_effect_from_the_next_packet() {
    let s = scene();
    let link = ConditionedLink::start(&s.near, &s.far, delay(0), delay(0), 1).unwrap();
    let dir = std::env::temp_dir().join(format!("nw-it-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let server = link.control(&path).unwrap();
    udp_echo(&s);
    let before = median(pings(&s, 5));
    let ms = |n: u64| Patch { delay_us: Some(n * 1000), ..Patch::default() };
    let set = |up: Patch, down: Patch| control::request(&path, &Request::Set { up, down });
    let state = set(ms(60), ms(40)).unwrap();
    assert_eq!((state.up.delay_us, state.down.delay_us), (Some(60_000), Some(40_000)));
    let after = pings(&s, 1)[0];
    eprintln!("conditioner change: RTT {before:.2} ms, then {after:.2} ms on the very next probe");
    assert!(before < 5.0, "{before}");
    assert!((100.0..=110.0).contains(&after), "the first probe after the change: {after:.2}");
    // All loss on the way up from now: the next probe is the first packet lost.
    let lost_before = link.counters().up.dropped_loss;
    set(Patch { loss: Some(1.0), ..Patch::default() }, Patch::default()).unwrap();
    assert!(pings(&s, 1).is_empty(), "the probe after 100 % loss answered");
    let shown = control::request(&path, &Request::Show {}).unwrap();
    assert_eq!(shown.up.delay_us, Some(60_000), "a patch keeps what it does not name");
    assert!(shown.counters.up.dropped_loss > lost_before, "{:?}", shown.counters);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn netns_teardown_leaves_no_device_behind() {
    let s = scene();
    let link =
        ConditionedLink::start(&s.near, &s.far, Profile::default(), Profile::default(), 1).unwrap();
    assert!(s.near.ip(["link", "show", "tun0"]).is_ok());
    drop(link);
    for ns in [&s.near, &s.far] {
        assert!(ns.ip(["link", "show", "tun0"]).is_err(), "tun0 left in {}", ns.name());
    }
}

/// Round trips (ms) of probes sent while a UDP flood at twice the link's rate fills the
/// near → far queue (TCP would pace itself and keep the queue short).
fn loaded_rtts(queue: usize) -> Vec<f64> {
    let s = scene();
    let up = Profile {
        rate_bps: Some(2_000_000),
        delay: 10 * MS,
        queue: QueueLimit::Packets(queue),
        ..Profile::default()
    };
    let link = ConditionedLink::start(&s.near, &s.far, up, delay(10), 5).unwrap();
    udp_echo(&s);
    let flood = in_namespace(&s.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    flood.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let flooder = std::thread::spawn(move || {
        // 10 × 1,000 bytes every 20 ms: 4 Mbit/s.
        let datagram = vec![0u8; 1000];
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..10 {
                let _ = flood.send_to(&datagram, far(9));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    std::thread::sleep(Duration::from_millis(1500)); // let the queue build
    let socket = in_namespace(&s.near, || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rtts = Vec::new();
    for i in 0..5u32 {
        let sent = Instant::now();
        if socket.send_to(&i.to_be_bytes(), far(7)).is_ok() {
            let mut buf = [0u8; 16];
            // Answers to earlier, late probes may arrive first: wait for this one's.
            while let Ok(n) = socket.recv(&mut buf) {
                if buf[..n] == i.to_be_bytes() {
                    rtts.push(sent.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flooder.join();
    let c = link.counters().up;
    eprintln!("queue {queue}: {c:?}");
    rtts
}

#[test]
fn netns_a_large_queue_multiplies_rtt_under_load_and_a_small_one_does_not() {
    let (large, small) = (loaded_rtts(300), loaded_rtts(10));
    assert!(large.len() >= 3 && small.len() >= 2, "probes answered: {large:?} / {small:?}");
    let (l, m) = (median(large.clone()), median(small.clone()));
    eprintln!(
        "conditioner queue under a 4 Mbit/s flood (2 Mbit/s, 2 × 10 ms): RTT median with 300 packets {l:.0} ms, with 10 packets {m:.0} ms"
    );
    // Ten 1,028-byte packets at 2 Mbit/s are about 41 ms of queue on the 20 ms round trip.
    assert!(m <= 150.0, "a small queue keeps the RTT near 20 ms + 41 ms, got {m:.0}");
    assert!(l >= 3.0 * m, "a large queue multiplies it: {l:.0} vs {m:.0}");
}
