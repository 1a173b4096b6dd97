//! Benchmark: verdicts per second of `nw filter up`, batched (the default) against one packet
//! at a time (`--batch 1`, the unbatched baseline), and the flow rate with no filter at all, in
//! alternating runs on the same pair of lab namespaces.
//!
//! The load is new UDP flows, closed loop: two threads in the client namespace each keep 128
//! flows in flight. A flow is a new socket that sends one datagram from its own source port to
//! one of 16 echo ports on the server and waits for the echo; every first datagram is queued,
//! attributed (sock_diag and procfs: this benchmark's own process, with its 256 open sockets),
//! decided by the rules (none: allow) and given its verdict. Conntrack's UDP timeout is 1 s in
//! the client namespace and source ports are used in turn, so every flow is a new 5-tuple.
//!
//! Also the latency one flow at a time adds: a TCP connect's p50 and p99 with each filter
//! against no filter. And data peeks: a 50 MB TCP upload whose first 1,024 bytes a provider (the
//! tests' Python provider) peeks at before allowing it, and a 50 MB download whose first 1,024
//! bytes from the server it peeks at, each against the same transfer with no filter. And what
//! reading DNS answers for flow names adds: the round trip of queries to the lab's DNS server,
//! one at a time on one socket (its flow allowed once, so only the answers are read), with the
//! filter against without (`NW_BENCH_MODES=dns` runs that part alone).
//!
//! Prints the medians and the ratios. Needs root and iproute2.
//!
//! Run: `cargo bench -p nw --bench filter` (5 s of load per run, 3 runs of each). With
//! `NW_BENCH_SMOKE=1`: 1 s, one run of each.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "benchmark program"
)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nw_lab::stats::{median, percentile};
use nw_lab::{Lab, Namespace, addr, in_namespace};
use serde_json::Value;

const NW: &str = env!("CARGO_BIN_EXE_nw");
const THREADS: u16 = 2;
const WINDOW: usize = 128;
const ECHO_PORTS: u16 = 16;
const FIRST_ECHO_PORT: u16 = 7000;
const TCP_PORT: u16 = 7100;
const SINK_PORT: u16 = 7200;
/// Sends each connection as many bytes as its first line asks for, then closes.
const SOURCE_PORT: u16 = 7300;
/// The tests' provider in Python, which peeks at flows to the ports it is told.
const PROVIDER: &str = include_str!("../tests/it/providers/filter.py");
const PYTHON: &str = "/usr/bin/python3";

/// How many flows the runs so far have used of each thread's (source port, echo port) cycle.
static USED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// UDP echo on the server's echo ports, and a TCP listener that accepts and closes. The
/// sockets are made inside `ns` and served from ordinary threads.
fn servers(ns: &Namespace) {
    let (sockets, listener) = in_namespace(ns, || {
        let sockets: Vec<UdpSocket> = (0..ECHO_PORTS)
            .map(|i| UdpSocket::bind((addr::SRV_V4, FIRST_ECHO_PORT + i)).unwrap())
            .collect();
        (sockets, TcpListener::bind((addr::SRV_V4, TCP_PORT)).unwrap())
    })
    .unwrap();
    let sink = in_namespace(ns, || TcpListener::bind((addr::SRV_V4, SINK_PORT)).unwrap()).unwrap();
    let source =
        in_namespace(ns, || TcpListener::bind((addr::SRV_V4, SOURCE_PORT)).unwrap()).unwrap();
    std::thread::spawn(move || {
        for c in source.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                use std::io::Write;
                let mut line = String::new();
                let _ = BufReader::new(&c).read_line(&mut line);
                let mut left: usize = line.trim().parse().unwrap_or(0);
                let chunk = vec![b'y'; 1 << 20];
                while left > 0 {
                    let n = left.min(chunk.len());
                    if (&c).write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    // Reads each connection to its end, then closes it.
    std::thread::spawn(move || {
        for c in sink.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &c, &mut std::io::sink());
            });
        }
    });
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    std::thread::spawn(move || {
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
        }
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: poll(2) on live pollfds of the sockets this thread owns.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
            for (i, p) in fds.iter_mut().enumerate() {
                if p.revents & libc::POLLIN != 0 {
                    while let Ok((n, from)) = sockets[i].recv_from(&mut buf) {
                        let _ = sockets[i].send_to(&buf[..n], from);
                    }
                }
                p.revents = 0;
            }
        }
    });
}

/// One generator thread: `WINDOW` flows in flight for `length`; its completed flows and the
/// flows that got no echo within 2 s.
fn generate(thread: u16, length: Duration) -> (u64, u64) {
    // Each thread owns a range of source ports and uses them in turn.
    let span = 60_000 / THREADS;
    let first = 2_000 + thread * span;
    // Where the last run stopped: the next run's flows are new 5-tuples too.
    let start = USED.load(std::sync::atomic::Ordering::Relaxed);
    let mut next = start % (u32::from(span) * u32::from(ECHO_PORTS));
    let mut slots: Vec<Option<(UdpSocket, Instant)>> = (0..WINDOW).map(|_| None).collect();
    let (mut done, mut lost) = (0u64, 0u64);
    let end = Instant::now() + length;
    let mut buf = [0u8; 64];
    while Instant::now() < end {
        for slot in slots.iter_mut().filter(|s| s.is_none()) {
            let port = first + (next % u32::from(span)) as u16;
            let to = FIRST_ECHO_PORT + ((next / u32::from(span)) % u32::from(ECHO_PORTS)) as u16;
            next = (next + 1) % (u32::from(span) * u32::from(ECHO_PORTS));
            let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) else { continue };
            s.set_nonblocking(true).unwrap();
            if s.connect((addr::SRV_V4, to)).is_ok() && s.send(b"x").is_ok() {
                *slot = Some((s, Instant::now()));
            }
        }
        let mut fds: Vec<libc::pollfd> = slots
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_ref().map_or(-1, |(s, _)| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll(2) on pollfds of sockets the slots keep open.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        let now = Instant::now();
        for (slot, p) in slots.iter_mut().zip(&fds) {
            let Some((s, since)) = slot else { continue };
            if p.revents & libc::POLLIN != 0 {
                if s.recv(&mut buf).is_ok() {
                    done += 1;
                }
                *slot = None;
            } else if now - *since > Duration::from_secs(2) {
                lost += 1;
                *slot = None;
            }
        }
    }
    USED.fetch_max(next, std::sync::atomic::Ordering::Relaxed);
    (done, lost)
}

/// Flows per second over `length`, and the flows lost.
fn load(ns: &Namespace, length: Duration) -> (f64, u64) {
    let started = Instant::now();
    let (done, lost) = in_namespace(ns, move || {
        let threads: Vec<_> =
            (0..THREADS).map(|t| std::thread::spawn(move || generate(t, length))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    })
    .unwrap();
    (done as f64 / started.elapsed().as_secs_f64(), lost)
}

/// TCP connect times in ms, one connect at a time.
fn connects(ns: &Namespace, n: usize) -> Vec<f64> {
    in_namespace(ns, move || {
        let to = SocketAddr::V4(SocketAddrV4::new(addr::SRV_V4, TCP_PORT));
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                // Reset instead of TIME_WAIT: thousands of connects must not run out of ports.
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                ms
            })
            .collect()
    })
    .unwrap()
}

/// MB/s of one upload of `bytes` to the sink, until the sink has read it all.
fn upload(ns: &Namespace, bytes: usize) -> f64 {
    in_namespace(ns, move || {
        use std::io::{Read, Write};
        let chunk = vec![b'x'; 1 << 20];
        let started = Instant::now();
        let mut s = TcpStream::connect((addr::SRV_V4, SINK_PORT)).unwrap();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = s.read(&mut [0u8; 1]);
        bytes as f64 / started.elapsed().as_secs_f64() / 1e6
    })
    .unwrap()
}

/// Round trips in µs of `n` DNS queries (A, `bench.example`), one at a time on one socket.
fn dns_round_trips(ns: &Namespace, n: usize) -> Vec<f64> {
    in_namespace(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((addr::SRV_V4, 53)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        (0..n)
            .map(|i| {
                // Header: id, RD, one question; then the name and type A, class IN.
                let id = (i as u16).to_be_bytes();
                let mut q = vec![id[0], id[1], 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                q.extend_from_slice(b"\x05bench\x07example\x00\x00\x01\x00\x01");
                let t = Instant::now();
                s.send(&q).unwrap();
                let n = s.recv(&mut buf).expect("the DNS server's answer");
                assert!(n > q.len(), "an answer, not an echo");
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    })
    .unwrap()
}

/// MB/s of one download of `bytes` from the source, until it closes.
fn download(ns: &Namespace, bytes: usize) -> f64 {
    in_namespace(ns, move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut s = TcpStream::connect((addr::SRV_V4, SOURCE_PORT)).unwrap();
        s.write_all(format!("{bytes}\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert_eq!(got, bytes, "the download was cut short");
        bytes as f64 / started.elapsed().as_secs_f64() / 1e6
    })
    .unwrap()
}

/// `nw filter up` with these extra arguments, ready (and its provider started, if any); its stdout is drained by a thread that
/// returns the flows the host saw when it stops.
struct Host {
    guard: nw_lab::Child,
    seen: std::sync::mpsc::Receiver<u64>,
}

/// Where the hosts keep their status and log (removed at the end).
fn state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nw-bench-filter-{}", std::process::id()))
}

fn host(ns: &Namespace, extra: &[&str]) -> Host {
    let mut cmd = ns.command(NW);
    cmd.args(["filter", "up", "--json"]).args(extra).stdout(Stdio::piped());
    cmd.env("NW_FILTER_STATE_DIR", state_dir()).stderr(Stdio::inherit());
    let mut guard = ns.spawn(cmd).expect("nw filter up");
    let mut lines = BufReader::new(guard.stdout().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        let provider = extra.contains(&"--provider");
        if v["event"] == if provider { "provider_started" } else { "ready" } {
            let (tx, seen) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                // Only the last line is parsed: the flow lines are read, not decoded, so the
                // benchmark takes little of the CPU the host runs on.
                for line in lines.map_while(Result::ok) {
                    if !line.contains("\"stopped\"") {
                        continue;
                    }
                    let v: Value = serde_json::from_str(&line).unwrap_or_default();
                    if v["event"] == "stopped" {
                        let _ = tx.send(v["stats"]["flows"].as_u64().unwrap_or(0));
                    }
                }
            });
            return Host { guard, seen };
        }
    }
    panic!("nw filter up did not become ready");
}

impl Host {
    /// Stops it; the flows it saw.
    fn stop(mut self) -> u64 {
        // SAFETY: kill(2) on the host's pid, which the guard keeps from being reaped.
        unsafe { libc::kill(self.guard.id() as libc::pid_t, libc::SIGTERM) };
        let seen = self.seen.recv_timeout(Duration::from_secs(20)).expect("the host's last line");
        for _ in 0..100 {
            if self.guard.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    }
}

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (length, runs, connects_n) =
        if smoke { (Duration::from_secs(1), 1, 200) } else { (Duration::from_secs(5), 3, 2_000) };
    let lab = Lab::new().expect("the lab (root and iproute2)");
    let p = lab.pair().expect("two namespaces");
    // Every flow a new conntrack entry: short UDP memory, and ports used in turn.
    p.cli.run(["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1"]).ok();
    servers(&p.srv);
    load(&p.cli, Duration::from_millis(300)); // warm-up

    let modes: [(&str, Option<&[&str]>); 3] =
        [("no filter", None), ("unbatched", Some(&["--batch", "1"])), ("batched", Some(&[]))];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut lats: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // NW_BENCH_MODES=batched (say) runs only the modes named, to profile one.
    let only = std::env::var("NW_BENCH_MODES").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|m| m == name));
    for run in 0..runs {
        for (i, (name, extra)) in modes.iter().enumerate() {
            if !wanted(name) {
                continue;
            }
            let h = extra.map(|e| host(&p.cli, e));
            if h.is_some() {
                // Conntrack is on in the namespace from now on; its UDP memory too.
                p.cli.run(["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1"]).unwrap();
            }
            let (rate, lost) = load(&p.cli, length);
            let l = connects(&p.cli, connects_n);
            let seen = h.map(Host::stop);
            println!(
                "run {run} {name:>9}: {rate:>9.0} flows/s, {lost} lost{}; connect p50 {:.3} ms p99 {:.3} ms",
                seen.map_or_else(String::new, |s| format!(", host saw {s} flows")),
                percentile(&l, 0.5),
                percentile(&l, 0.99),
            );
            rates[i].push(rate);
            lats[i].extend(l);
        }
    }
    println!("\nmedians over {runs} run(s) of {} s each:", length.as_secs());
    let base = median(&rates[1]);
    for (i, (name, _)) in modes.iter().enumerate() {
        if rates[i].is_empty() {
            continue;
        }
        let r = median(&rates[i]);
        println!(
            "{name:>9}: {r:>9.0} flows/s ({:.2}× unbatched); connect p50 {:.3} ms p99 {:.3} ms",
            r / base,
            percentile(&lats[i], 0.5),
            percentile(&lats[i], 0.99),
        );
    }

    // Data peeks: uploads peeked at (1,024 bytes, then allowed) against no filter, alternating.
    if wanted("peek") {
        let bytes = if smoke { 10_000_000 } else { 50_000_000 };
        let options = format!(
            r#"{{"peek_ports": [{SINK_PORT}], "peek_in_ports": [{SOURCE_PORT}], "allow_ports": [{TCP_PORT}]}}"#
        );
        let peeking: [&str; 7] =
            ["--provider", PYTHON, "--options", &options, "--", "-c", PROVIDER];
        let (mut bare, mut peeked) = (Vec::new(), Vec::new());
        let (mut bare_down, mut peeked_down) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(3) {
            bare.push(upload(&p.cli, bytes));
            bare_down.push(download(&p.cli, bytes));
            let h = host(&p.cli, &peeking);
            peeked.push(upload(&p.cli, bytes));
            peeked_down.push(download(&p.cli, bytes));
            h.stop();
        }
        for (what, bare, peeked) in
            [("uploads", &bare, &peeked), ("downloads", &bare_down, &peeked_down)]
        {
            let (b, k) = (median(bare), median(peeked));
            // The difference is mostly fixed: the provider is asked twice (the new flow, then
            // its first bytes) before the rest of the transfer leaves the kernel.
            let added_ms = (bytes as f64 / (k * 1e6) - bytes as f64 / (b * 1e6)) * 1e3;
            println!(
                "\n{} MB {what}, median of {}: no filter {b:.0} MB/s; peeked at (1,024 bytes {}, then allowed) {k:.0} MB/s ({:.2}×, {added_ms:.1} ms added each)",
                bytes / 1_000_000,
                bare.len(),
                if what == "uploads" { "sent" } else { "received" },
                k / b
            );
        }
    }

    // DNS answers read for flow names: query round trips with the filter against without.
    if wanted("dns") {
        use nw_lab::dns::{DnsServer, Records, Script};
        let mut script = Script { ttl: 60, ..Script::default() };
        let records = Records { a: vec![addr::SRV_V4], ..Records::default() };
        script.records.insert("bench.example".into(), records);
        let _dns = DnsServer::start(&p.srv, (addr::SRV_V4, 53).into(), script).expect("DNS");
        let n = if smoke { 200 } else { 2_000 };
        let (mut bare, mut read) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(3) {
            bare.push(median(&dns_round_trips(&p.cli, n)));
            let h = host(&p.cli, &[]);
            read.push(median(&dns_round_trips(&p.cli, n)));
            h.stop();
        }
        let (b, r) = (median(&bare), median(&read));
        println!(
            "\nDNS queries, {n} a run on one socket, median of {} runs' medians: no filter {b:.0} µs; answers read for flow names {r:.0} µs ({:.0} µs added)",
            bare.len(),
            r - b
        );
    }
    let _ = std::fs::remove_dir_all(state_dir());
}
