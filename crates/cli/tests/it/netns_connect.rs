//! Connection scenarios (LAB.md S1, S1b, S2, S2b, S3, S4, S5, S6, S7, S9, S11, S12), the QUIC
//! race, and TLS and QUIC interop for `nw cat`, in lab namespaces: the lab's DNS server answers
//! `*.test`, nftables faults break one path, and the report says when and how the connection
//! was made. Thresholds: the configured delays plus slack.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nw_lab::dns::{DnsServer, Records, Script};
use nw_lab::nfqueue::{Delayer, Tables};
use nw_lab::{Fault, Lab, Pair, Proto, addr, in_namespace};
use serde_json::Value;

use crate::support::{NW, cpu_ticks, event, median, nw_report};

const PORT: u16 = 8080;
const SRV_V4_B: &str = "198.51.100.3";

struct Scene {
    lab: Lab,
    p: Pair,
    dns: DnsServer,
    listener: TcpListener,
}

/// A client and a server; the server answers DNS for `*.test` (A 198.51.100.2, AAAA
/// 2001:db8:1::2) and listens on both families at port 8080 without accepting (the kernel
/// completes handshakes into the backlog).
fn scene() -> Scene {
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let p = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    p.srv.add_address("eth0", SRV_V4_B.parse().unwrap(), 24).unwrap();
    let script = Script::wildcard(&[addr::SRV_V4], &[addr::SRV_V6]);
    let dns = DnsServer::start(&p.srv, SocketAddr::new(addr::SRV_V4.into(), 53), script).unwrap();
    p.cli.set_resolv_conf("nameserver 198.51.100.2\noptions timeout:5 attempts:1\n").unwrap();
    p.cli.set_hosts("127.0.0.1 localhost\n").unwrap();
    let listener = in_namespace(&p.srv, || TcpListener::bind(("::", PORT))).unwrap().unwrap();
    Scene { lab, p, dns, listener }
}

/// Runs `nw cat -z --json www.test 8080` in the client; returns (won at ms, address).
fn connect(s: &Scene) -> (f64, IpAddr, Value) {
    let report = nw_report(&s.p.cli, &["cat", "-z", "--json", "www.test", &PORT.to_string()]);
    let won = event(&report, "won");
    let addr: SocketAddr = won["addr"].as_str().unwrap().parse().unwrap();
    (won["at"].as_f64().unwrap(), addr.ip(), report)
}

/// A08: runs `nw cat` and keeps it connected (the peer never closes); 10 ms after the win the
/// process must hold exactly one socket — the winner's, to `winner` — and none in SYN-SENT.
/// (stdin is /dev/null, so the winner has half-closed: FIN-WAIT-2. Sockets of earlier runs
/// linger as orphans that belong to no process, so only this process's are counted.)
fn assert_only_the_winner_is_open(s: &Scene, winner: &str) {
    let mut cmd = s.p.cli.command(NW);
    cmd.args(["cat", "--json", "www.test", &PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = s.p.cli.spawn(cmd).unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("\"won\""), "{line}");
    std::thread::sleep(Duration::from_millis(10));
    let ours = format!("pid={},", child.id());
    let sockets = s.p.cli.run(["ss", "-Htanp"]).unwrap();
    let mine: Vec<&str> = sockets.lines().filter(|l| l.contains(&ours)).collect();
    assert_eq!(mine.len(), 1, "exactly one socket, the winner's: {sockets}");
    assert!(mine[0].contains(winner) && !mine[0].starts_with("SYN-SENT"), "{sockets}");
}

fn runs(s: &Scene, n: usize, want: IpAddr) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (at, ip, report) = connect(s);
            assert_eq!(ip, want, "connected to the wrong address: {report}");
            at
        })
        .collect()
}

#[test]
fn s1_ipv6_blackholed_connects_over_ipv4_after_the_attempt_delay() {
    let s = scene();
    s.p.cli.fault(addr::SRV_V6.into(), Proto::Tcp, Some(PORT), Fault::Drop).unwrap();
    let times = runs(&s, 3, addr::SRV_V4.into());
    let m = median(times.clone());
    eprintln!("S1 IPv6 blackholed: connected over IPv4 at {times:.1?} ms (median {m:.1})");
    assert!((250.0..=300.0).contains(&m), "want 250 ms attempt delay + RTT + slack, got {m:.1}");

    // A08: once ready, no attempt socket of the connection stays open.
    assert_only_the_winner_is_open(&s, "198.51.100.2:8080");
}

#[test]
fn s1b_ipv6_rejected_fails_over_on_the_error_not_the_timer() {
    let s = scene();
    s.p.cli.fault(addr::SRV_V6.into(), Proto::Tcp, Some(PORT), Fault::Reset).unwrap();
    let times = runs(&s, 3, addr::SRV_V4.into());
    let m = median(times.clone());
    eprintln!("S1b IPv6 rejected: connected over IPv4 at {times:.1?} ms (median {m:.1})");
    assert!(m <= 40.0, "want < 10 ms + slack, got {m:.1}");
    let (_, _, report) = connect(&s);
    assert_eq!(event(&report, "attempt_failed")["error"]["kind"], "refused", "{report}");
}

#[test]
fn s2_late_aaaa_answer_costs_only_the_resolution_delay() {
    let s = scene();
    s.dns.script().delays.aaaa = Duration::from_secs(2);
    let times = runs(&s, 3, addr::SRV_V4.into());
    let m = median(times.clone());
    eprintln!(
        "S2 AAAA 2 s late: connected over IPv4 at {times:.1?} ms (median {m:.1}); getaddrinfo clients wait 2 s"
    );
    assert!((50.0..=100.0).contains(&m), "want 50 ms resolution delay + RTT + slack, got {m:.1}");
}

#[test]
fn s2b_slow_a_answer_does_not_hold_up_ipv6() {
    let s = scene();
    s.dns.script().delays.a = Duration::from_secs(2);
    let times = runs(&s, 3, addr::SRV_V6.into());
    let m = median(times.clone());
    eprintln!("S2b A 2 s late: connected over IPv6 at {times:.1?} ms (median {m:.1})");
    assert!(m <= 30.0, "want about one RTT, got {m:.1}");
}

#[test]
fn s4_first_of_two_ipv4_addresses_blackholed() {
    let s = scene();
    {
        let mut script = s.dns.script();
        script.records.insert(
            "*.test".into(),
            Records {
                a: vec![addr::SRV_V4, SRV_V4_B.parse().unwrap()],
                aaaa: vec![],
                https_alpn: vec![],
            },
        );
    }
    s.p.cli.fault(addr::SRV_V4.into(), Proto::Tcp, Some(PORT), Fault::Drop).unwrap();
    let times = runs(&s, 3, SRV_V4_B.parse().unwrap());
    let m = median(times.clone());
    eprintln!(
        "S4 first A record blackholed: connected to the second at {times:.1?} ms (median {m:.1}); curl 7.88 took 134.9 s"
    );
    assert!((250.0..=300.0).contains(&m), "want 250 ms + RTT + slack, got {m:.1}");
}

/// Holds the server's SYN-ACKs from port 8080 for `delay` (IPv4, IPv6 or both): a slow path.
fn slow_syn_ack(s: &Scene, tables: Tables, delay: Duration) -> Delayer {
    let rule = ["OUTPUT", "-p", "tcp", "--sport", "8080", "--tcp-flags", "SYN,ACK", "SYN,ACK"];
    Delayer::start(&s.p.srv, 9, delay, tables, &rule).unwrap_or_else(|e| panic!("delayer: {e}"))
}

#[test]
fn s3_both_families_slow_few_attempts() {
    let s = scene();
    let _slow = slow_syn_ack(&s, Tables::Both, Duration::from_millis(400));
    let before = s.p.cli.tcp_counters().unwrap();
    let times = runs(&s, 3, addr::SRV_V6.into());
    let syns = s.p.cli.tcp_counters().unwrap().active_opens - before.active_opens;
    let m = median(times.clone());
    eprintln!(
        "S3 both families 400 ms slow: connected over IPv6 at {times:.1?} ms (median {m:.1}), {syns} connection attempts in 3 runs"
    );
    assert!((400.0..=450.0).contains(&m), "want 400 ms + slack, got {m:.1}");
    assert!(syns <= 6, "at most two attempts a run (IPv6 at 0, IPv4 at 250): {syns}");
}

#[test]
fn s5_four_plus_four_slow_addresses_few_syns_nothing_left_over() {
    let s = scene();
    let v4: Vec<std::net::Ipv4Addr> =
        (2..=5).map(|i| std::net::Ipv4Addr::new(198, 51, 100, i)).collect();
    let v6: Vec<std::net::Ipv6Addr> =
        (2..=5).map(|i| std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i)).collect();
    for ip in &v4[2..] {
        s.p.srv.add_address("eth0", (*ip).into(), 24).unwrap();
    }
    for ip in &v6[1..] {
        s.p.srv.add_address("eth0", (*ip).into(), 64).unwrap();
    }
    s.dns.script().records.insert("*.test".into(), Records { a: v4, aaaa: v6, https_alpn: vec![] });
    let _slow = slow_syn_ack(&s, Tables::Both, Duration::from_millis(600));
    let before = s.p.cli.tcp_counters().unwrap();
    let (at, ip, report) = connect(&s);
    let syns = s.p.cli.tcp_counters().unwrap().active_opens - before.active_opens;
    eprintln!(
        "S5 4+4 addresses, all 600 ms slow: connected to {ip} at {at:.1} ms with {syns} SYNs"
    );
    assert!((600.0..=650.0).contains(&at), "{report}");
    assert!(syns <= 4, "{syns} SYNs: {report}");

    // Nothing but the winner left 10 ms after the win, while nw cat stays connected.
    assert_only_the_winner_is_open(&s, "[2001:db8:1::2]:8080");
}

#[test]
fn s6_late_aaaa_joins_a_slow_ipv4_race() {
    let s = scene();
    s.dns.script().delays.aaaa = Duration::from_millis(120);
    let _slow = slow_syn_ack(&s, Tables::Ipv4, Duration::from_millis(600));
    let times = runs(&s, 3, addr::SRV_V6.into());
    let m = median(times.clone());
    eprintln!(
        "S6 AAAA 120 ms late, IPv4 slow: connected over IPv6 at {times:.1?} ms (median {m:.1})"
    );
    assert!((120.0..=170.0).contains(&m), "want 120 ms + RTT + slack, got {m:.1}");
}

/// A TLS server: `openssl s_server -www` in the server namespace on 198.51.100.2:4433, with a
/// certificate for www.test from a throwaway test CA. Returns the guard and the root's path.
fn openssl_server(
    s: &Scene,
    dir: &std::path::Path,
    extra: &[&str],
) -> (nw_lab::Child, std::path::PathBuf) {
    let ca = nw_trust::ca::TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["www.test"]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key, root) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("root.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&root, ca.cert_pem()).unwrap();
    let mut cmd = s.p.srv.command("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept", "198.51.100.2:4433"]);
    cmd.arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = s.p.srv.spawn(cmd).unwrap();
    // Wait (bounded) until it listens.
    let to: SocketAddr = "198.51.100.2:4433".parse().unwrap();
    let ready = (0..100).any(|_| {
        let ok = in_namespace(&s.p.srv, move || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50)).is_ok()
        })
        .unwrap();
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok
    });
    assert!(ready, "openssl s_server did not start listening within 2 s");
    (child, root)
}

/// ngtcp2's `gtlsserver` on UDP 198.51.100.2:4433, beside `openssl_server`'s TCP one, with the
/// same certificate (from `dir`).
fn gtlsserver_beside(s: &Scene, dir: &std::path::Path) -> nw_lab::Child {
    let mut cmd = s.p.srv.command("gtlsserver");
    cmd.args(["-q", "198.51.100.2", "4433"])
        .arg(dir.join("key.pem"))
        .arg(dir.join("cert.pem"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = s.p.srv.spawn(cmd).expect("gtlsserver (apt-get install ngtcp2-server)");
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn s7_a_path_that_never_speaks_tls_loses_to_one_that_does() {
    let s = scene();
    let dir = std::env::temp_dir().join(format!("{}-s7", s.p.cli.name()));
    let (_server, root) = openssl_server(&s, &dir, &[]);
    // IPv6 accepts TCP on 4433 and then says nothing.
    let _mute =
        in_namespace(&s.p.srv, || TcpListener::bind("[2001:db8:1::2]:4433")).unwrap().unwrap();
    s.p.cli
        .set_hosts("127.0.0.1 localhost\n2001:db8:1::2 www.test\n198.51.100.2 www.test\n")
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let root = root.to_str().unwrap();
        let report = nw_report(
            &s.p.cli,
            &["cat", "--tls", "-z", "--json", "--anchor", root, "www.test", "4433"],
        );
        let won = event(&report, "won");
        assert_eq!(won["addr"], "198.51.100.2:4433", "{report}");
        assert_eq!(report["tls"]["version"], "TLSv1_3", "{report}");
        times.push(won["at"].as_f64().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let m = median(times.clone());
    eprintln!(
        "S7 IPv6 accepts TCP but never speaks TLS: TLS-ready over IPv4 at {times:.1?} ms (median {m:.1})"
    );
    assert!((250.0..=330.0).contains(&m), "want 250 ms + a TLS handshake + slack, got {m:.1}");
}

#[test]
fn tls_interop_with_openssl_s_server() {
    let s = scene();
    let dir = std::env::temp_dir().join(format!("{}-tls", s.p.cli.name()));
    let (_server, root) = openssl_server(&s, &dir, &["-alpn", "h2,http/1.1"]);
    s.p.cli.set_hosts("127.0.0.1 localhost\n198.51.100.2 www.test other.test\n").unwrap();

    let mut cmd = s.p.cli.command(NW);
    cmd.args(["cat", "--tls", "--report", "--alpn", "http/1.1", "--anchor"])
        .arg(&root)
        .args(["www.test", "4433"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("HTTP/1.0 200 ok"), "payload on stdout: {stdout}");
    assert!(
        stderr.contains("TLS TLSv1_3") && stderr.contains("ALPN http/1.1"),
        "report on stderr: {stderr}"
    );
    assert!(!stdout.contains("TLSv1_3 TLS13"), "the report never mixes into the payload");

    // The certificate names www.test only: another name fails, saying why, with status 1.
    let out =
        s.p.cli
            .command(NW)
            .args(["cat", "--tls", "-z", "--anchor"])
            .arg(&root)
            .args(["other.test", "4433"])
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not trusted: Certificate 0 “www.test” has errors: Hostname mismatch;"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (up to 10 s) for a `nw cat -z --json` that was waiting for a path to connect and
/// exit 0, and returns its report (the first line of the rest of its stderr).
fn finish_waiting(mut child: nw_lab::Child, mut err: impl std::io::Read) -> Value {
    let status = child.wait_for(Duration::from_secs(10)).unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    serde_json::from_str(rest.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {rest}"))
}

/// S9 for connections: with no usable path a connection waits, saying why, without busy
/// polling, and is ready as soon as the path returns; with a short --timeout it gives up,
/// saying no path came.
#[test]
fn s9_connection_waits_for_a_path_then_connects() {
    let s = scene();
    // Names from the hosts file: DNS is unreachable while the link is down.
    s.p.cli
        .set_hosts("127.0.0.1 localhost\n2001:db8:1::2 www.test\n198.51.100.2 www.test\n")
        .unwrap();
    s.p.srv.set_link(&s.p.srv_dev, false).unwrap();
    // Carrier loss reaches the kernel's view within linkwatch's second.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let v: Value =
            serde_json::from_str(&s.p.cli.run([NW, "path", "--json"]).unwrap_or_default())
                .unwrap_or_default();
        if v["reason"] == "no_carrier" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Gives up after --timeout, saying why.
    let t = Instant::now();
    let out =
        s.p.cli
            .command(NW)
            .args(["cat", "-z", "--timeout", "1", "www.test", "8080"])
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("waiting for a usable path") && stderr.contains("carrier"), "{stderr}");
    assert!(stderr.contains("still waiting for a usable path"), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(3), "gave up in {:?}", t.elapsed());

    // Waits, then connects once the carrier is back.
    let mut cmd = s.p.cli.command(NW);
    cmd.args(["cat", "-z", "--json", "--timeout", "20", "www.test", "8080"]).stderr(Stdio::piped());
    let mut child = s.p.cli.spawn(cmd).unwrap();
    let mut err = BufReader::new(child.stderr().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("waiting for a usable path"), "{first}");
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(child.id()) - before;
    assert!(used <= 5, "{used} ticks of CPU while waiting: busy polling?");
    let restored = Instant::now();
    s.p.srv.set_link(&s.p.srv_dev, true).unwrap();
    let report = finish_waiting(child, err);
    let took = restored.elapsed();
    let steps = report["path"].as_array().unwrap();
    assert_eq!(steps[0]["reason"], "no_carrier", "{report}");
    assert_eq!(steps.len(), 2, "one step per change: {report}");
    assert_eq!(steps.last().unwrap()["status"], "satisfied", "{report}");
    assert!(report["events"].as_array().unwrap().iter().any(|e| e["event"] == "won"), "{report}");
    eprintln!(
        "S9 connection: waited {:.0} ms, connected {took:?} after the carrier returned ({used} CPU ticks while waiting)",
        report["waited"].as_f64().unwrap()
    );
    // The kernel may hold the carrier-up event up to a second (linkwatch); then the race, whose
    // first attempt (IPv6, kept across the outage) should win.
    assert!(took < Duration::from_millis(1_500), "connected {took:?} after the path returned");
    assert_eq!(event(&report, "won")["addr"], "[2001:db8:1::2]:8080", "{report}");
}

/// S11 for connections: with expensive paths prohibited and only an expensive one up, the
/// connection waits, saying why; a cheaper default appears and it connects — held to the cheap
/// interface, even to an address the expensive one reaches directly.
#[test]
fn s11_prohibited_expensive_connection_waits_then_uses_the_cheaper_path() {
    let s = scene();
    s.p.cli.set_hosts("127.0.0.1 localhost\n198.51.100.2 www.test\n").unwrap();
    let mut cmd = s.p.cli.command(NW);
    cmd.env("NW_EXPENSIVE", "eth0")
        .args(["cat", "-z", "--json", "--prohibit-expensive", "--timeout", "20", "www.test"])
        .arg(PORT.to_string())
        .stderr(Stdio::piped());
    let mut child = s.p.cli.spawn(cmd).unwrap();
    let mut err = BufReader::new(child.stderr().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("waiting for a usable path") && first.contains("expensive"), "{first}");

    let t0 = Instant::now();
    s.lab.veth(&s.p.cli, "eth1", &s.p.srv, "eth1").unwrap();
    s.p.cli.add_address("eth1", "203.0.113.1".parse().unwrap(), 24).unwrap();
    s.p.srv.add_address("eth1", "203.0.113.2".parse().unwrap(), 24).unwrap();
    s.p.cli.ip(["route", "add", "default", "via", "203.0.113.2", "metric", "10"]).unwrap();
    let report = finish_waiting(child, err);
    let took = t0.elapsed();
    let steps = report["path"].as_array().unwrap();
    assert_eq!(steps[0]["reason"], "expensive_prohibited", "{report}");
    assert_eq!(steps.last().unwrap()["status"], "satisfied", "{report}");
    assert_eq!(report["interface"], "eth1", "attempts held to the cheap interface: {report}");
    // The server saw the connection arrive from the cheap interface's address, although
    // 198.51.100.2 is on the expensive interface's own subnet.
    let (_, peer) = s.listener.accept().unwrap();
    let from = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    assert_eq!(from, "203.0.113.1".parse::<IpAddr>().unwrap(), "{report}");
    eprintln!(
        "S11 connection: waited, then connected over eth1 {took:?} after the cheap path began"
    );
    assert!(took < Duration::from_secs(2), "ready {took:?} after the cheaper path appeared");
}

/// S12: an IPv6-only client behind NAT64 (64:ff9b::/96) reaches an A-only name and an IPv4
/// literal through the synthesized address. No translator: the server holds the synthesized
/// address itself (LAB.md).
#[test]
fn s12_ipv6_only_with_nat64_reaches_ipv4_names_and_literals() {
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let p = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    p.cli.ip(["addr", "del", "198.51.100.1/24", "dev", "eth0"]).unwrap(); // IPv6-only now
    p.srv.add_address("eth0", "64:ff9b::c633:6402".parse().unwrap(), 128).unwrap();
    let mut script =
        Script { ttl: 30, nat64_prefix: Some("64:ff9b::".parse().unwrap()), ..Script::default() };
    script.records.insert(
        "v4only.test".into(),
        Records { a: vec![addr::SRV_V4], aaaa: vec![], https_alpn: vec![] },
    );
    let _dns = DnsServer::start(&p.srv, SocketAddr::new(addr::SRV_V6.into(), 53), script).unwrap();
    p.cli.set_resolv_conf("nameserver 2001:db8:1::2\noptions timeout:2 attempts:1\n").unwrap();
    p.cli.set_hosts("127.0.0.1 localhost\n").unwrap();
    let _listener = in_namespace(&p.srv, || TcpListener::bind(("::", PORT))).unwrap().unwrap();

    let path: Value = serde_json::from_str(&p.cli.run([NW, "path", "--json"]).unwrap()).unwrap();
    assert_eq!(
        (&path["supports_ipv4"], &path["supports_ipv6"]),
        (&Value::Bool(false), &Value::Bool(true)),
        "{path}"
    );
    for target in ["v4only.test", "198.51.100.2"] {
        let report = nw_report(&p.cli, &["cat", "-z", "--json", target, "8080"]);
        assert_eq!(report["nat64"], "64:ff9b::", "{report}");
        assert_eq!(report["connected"], "[64:ff9b::c633:6402]:8080", "{target}: {report}");
        eprintln!("S12 {target}: connected via {} ", report["connected"]);
    }
}

/// QUIC interop with ngtcp2's `gtlsserver` (the one packaged QUIC + HTTP/3 peer): a handshake
/// with ALPN h3, reported; and the race over QUIC: with UDP to IPv6 dropped, IPv4 wins after
/// the attempt delay.
#[test]
fn quic_handshake_with_ngtcp2_and_the_race_over_quic() {
    let s = scene();
    let dir = std::env::temp_dir().join(format!("{}-quic", s.p.cli.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = nw_trust::ca::TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["www.test"]).unwrap();
    let (cert, key, root) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("root.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&root, ca.cert_pem()).unwrap();
    let mut cmd = s.p.srv.command("gtlsserver");
    cmd.args(["-q", "*", "4443"])
        .arg(&key)
        .arg(&cert)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = s.p.srv.spawn(cmd).expect("gtlsserver (apt-get install ngtcp2-server)");
    std::thread::sleep(Duration::from_millis(300));
    s.p.cli
        .set_hosts("127.0.0.1 localhost\n2001:db8:1::2 www.test\n198.51.100.2 www.test\n")
        .unwrap();
    let anchor = root.to_str().unwrap();
    let quic = |expect: &str| -> f64 {
        let args = [
            "cat", "--quic", "--alpn", "h3", "-z", "--json", "--anchor", anchor, "www.test", "4443",
        ];
        let report = nw_report(&s.p.cli, &args);
        assert_eq!(report["tls"]["alpn"], "h3", "{report}");
        assert_eq!(report["tls"]["version"], "QUICv1 (TLSv1_3)", "{report}");
        assert_eq!(report["connected"], expect, "{report}");
        event(&report, "won")["at"].as_f64().unwrap()
    };
    let direct = quic("[2001:db8:1::2]:4443");
    s.p.cli.fault(addr::SRV_V6.into(), Proto::Udp, Some(4443), Fault::Drop).unwrap();
    let times: Vec<f64> = (0..3).map(|_| quic("198.51.100.2:4443")).collect();
    let m = median(times.clone());
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "QUIC to ngtcp2: ready over IPv6 in {direct:.1} ms; with IPv6 UDP dropped, over IPv4 at {times:.1?} ms (median {m:.1})"
    );
    assert!((250.0..=330.0).contains(&m), "want 250 ms + a QUIC handshake + slack, got {m:.1}");
}

/// The QUIC race for real: the name's HTTPS record advertises h3, ngtcp2's `gtlsserver`
/// answers QUIC and `openssl s_server` TLS over TCP on the same port. QUIC goes first and
/// wins; with TCP dropped QUIC still wins at once; with UDP dropped TCP wins one attempt delay
/// later; a record without h3 means TCP alone.
#[test]
fn quic_raced_against_tcp_when_the_https_record_advertises_h3() {
    let s = scene();
    let dir = std::env::temp_dir().join(format!("{}-h3race", s.p.cli.name()));
    let (_tcp, root) = openssl_server(&s, &dir, &["-alpn", "http/1.1"]);
    let _quic = gtlsserver_beside(&s, &dir);
    let set_alpn = |alpn: &[&str]| {
        let mut script = s.dns.script();
        let records = script.records.get_mut("*.test").unwrap();
        records.https_alpn = alpn.iter().map(|a| (*a).to_owned()).collect();
    };
    set_alpn(&["h3", "h2"]);
    let anchor = root.to_str().unwrap().to_owned();
    // IPv4 only: both servers listen on 198.51.100.2.
    let race = |label: &str| -> (f64, String, Value) {
        let args = [
            "cat",
            "-4",
            "--tls",
            "--alpn",
            "h3,http/1.1",
            "-z",
            "--json",
            "--anchor",
            &anchor,
            "www.test",
            "4433",
        ];
        let report = nw_report(&s.p.cli, &args);
        let won = event(&report, "won");
        let protocol = won["protocol"].as_str().unwrap_or_default().to_owned();
        let alpn = report["tls"]["alpn"].as_str().unwrap_or_default();
        let want = if protocol == "quic" { "h3" } else { "http/1.1" };
        assert_eq!(alpn, want, "{label}: each transport offers its own ALPN ids: {report}");
        assert!(
            report["events"].as_array().unwrap().iter().any(|e| e["event"] == "services"),
            "{label}: the HTTPS answer is in the report: {report}"
        );
        (won["at"].as_f64().unwrap(), protocol, report)
    };

    let open: Vec<(f64, String, Value)> = (0..3).map(|_| race("open")).collect();
    for (_, protocol, report) in &open {
        assert_eq!(protocol, "quic", "h3 advertised: QUIC goes first and wins: {report}");
    }
    let open_m = median(open.iter().map(|o| o.0).collect());

    s.p.cli.fault(addr::SRV_V4.into(), Proto::Tcp, Some(4433), Fault::Drop).unwrap();
    let no_tcp: Vec<f64> = (0..3)
        .map(|_| {
            let (at, protocol, report) = race("TCP dropped");
            assert_eq!(protocol, "quic", "{report}");
            at
        })
        .collect();
    let no_tcp_m = median(no_tcp.clone());
    s.p.cli.clear_faults().unwrap();

    s.p.cli.fault(addr::SRV_V4.into(), Proto::Udp, Some(4433), Fault::Drop).unwrap();
    let no_udp: Vec<f64> = (0..3)
        .map(|_| {
            let (at, protocol, report) = race("UDP dropped");
            assert_eq!(protocol, "tcp", "{report}");
            let first = event(&report, "attempt_started");
            assert_eq!(first["protocol"], "quic", "QUIC was tried first: {report}");
            at
        })
        .collect();
    let no_udp_m = median(no_udp.clone());
    s.p.cli.clear_faults().unwrap();

    set_alpn(&["h2"]);
    let (_, protocol, report) = race("no h3");
    assert_eq!(protocol, "tcp", "{report}");
    let quic_tried = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "attempt_started" && e["protocol"] == "quic");
    assert!(!quic_tried, "no h3 advertised, no QUIC attempt: {report}");
    let _ = std::fs::remove_dir_all(&dir);

    eprintln!(
        "QUIC race (HTTPS alpn=h3,h2): open: QUIC at {:.1?} ms; TCP dropped: QUIC at {no_tcp:.1?} ms (median {no_tcp_m:.1}); UDP dropped: TCP at {no_udp:.1?} ms (median {no_udp_m:.1})",
        open.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    assert!(open_m < 200.0, "QUIC wins before TCP even starts, got {open_m:.1}");
    assert!(no_tcp_m < 200.0, "a dropped TCP costs nothing, got {no_tcp_m:.1}");
    assert!(
        (250.0..=330.0).contains(&no_udp_m),
        "want 250 ms attempt delay + a TLS handshake + slack, got {no_udp_m:.1}"
    );
}

/// JSON lines from a child's stderr, timestamped as they arrive.
fn json_lines(read: impl std::io::Read + Send + 'static) -> mpsc::Receiver<(Instant, Value)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines().map_while(Result::ok) {
            let Ok(value) = serde_json::from_str(&line) else { continue };
            if tx.send((Instant::now(), value)).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_line(lines: &mpsc::Receiver<(Instant, Value)>, what: &str) -> (Instant, Value) {
    lines
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("no line within 5 s: expected {what}"))
}

/// After ready, the connection follows its path: its link loses the carrier (not viable, and
/// why), the carrier returns (viable), and a cheaper default appears while it runs on an
/// expensive link (a better path, via eth1). The connection itself stays up throughout.
#[test]
fn netns_connection_viability_and_better_path_after_ready() {
    let s = scene();
    let mut cmd = s.p.cli.command(NW);
    cmd.env("NW_EXPENSIVE", "eth0")
        .args(["cat", "--json", "198.51.100.2", &PORT.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = s.p.cli.spawn(cmd).unwrap();
    let lines = json_lines(child.stderr().unwrap());
    let (_, report) = next_line(&lines, "the report");
    assert_eq!(report["connected"], "198.51.100.2:8080", "{report}");
    // The kernel holds back a link event until a second after its previous linkwatch run
    // (see S8): wait that out, so the time measured is ours.
    std::thread::sleep(Duration::from_millis(2_200));

    let t0 = Instant::now();
    s.p.srv.set_link(&s.p.srv_dev, false).unwrap();
    let (at, down) = next_line(&lines, "not viable");
    let lost = at - t0;
    assert_eq!(
        (&down["viable"], &down["why_not"]),
        (&Value::Bool(false), &"no_carrier".into()),
        "{down}"
    );
    assert_eq!(down["connection"], report["connection"], "{down}");

    std::thread::sleep(Duration::from_millis(2_200));
    let t1 = Instant::now();
    s.p.srv.set_link(&s.p.srv_dev, true).unwrap();
    let (at, up) = next_line(&lines, "viable again");
    let back = at - t1;
    assert_eq!((&up["viable"], &up["better_path"]), (&Value::Bool(true), &Value::Null), "{up}");

    let t2 = Instant::now();
    s.lab.veth(&s.p.cli, "eth1", &s.p.srv, "eth1").unwrap();
    s.p.cli.add_address("eth1", "203.0.113.1".parse().unwrap(), 24).unwrap();
    s.p.srv.add_address("eth1", "203.0.113.2".parse().unwrap(), 24).unwrap();
    s.p.cli.ip(["route", "add", "default", "via", "203.0.113.2", "metric", "10"]).unwrap();
    let (at, better) = next_line(&lines, "a better path");
    let offered = at - t2;
    assert_eq!(
        (&better["viable"], &better["better_path"]),
        (&Value::Bool(true), &"eth1".into()),
        "{better}"
    );
    assert!(child.try_wait().unwrap().is_none(), "the connection stays up");
    child.terminate();
    eprintln!(
        "viability: carrier loss said in {lost:?}, carrier back in {back:?}; better path via eth1 {offered:?} after the cheap path began"
    );
    // The path monitor reports the first change after quiet at once (S8: ~5 ms); the better
    // path settles within the 250 ms debounce after the last of four changes. Plus slack.
    assert!(lost < Duration::from_millis(500) && back < Duration::from_millis(500));
    assert!(offered < Duration::from_secs(1));
}

/// An accessory's own network: the client has no default route at all. A destination on the
/// link connects at once — an IP literal over TCP, a name from the hosts file, TLS, and QUIC —
/// because the path is judged for the destination, not for the internet; an off-link one
/// waits, saying no route leads to it, and connects as soon as a route appears.
#[test]
fn on_link_destinations_connect_without_a_default_route_and_off_link_ones_wait_for_a_route() {
    let s = scene();
    let dir = std::env::temp_dir().join(format!("{}-onlink", s.p.cli.name()));
    let (_tls, root) = openssl_server(&s, &dir, &[]);
    let _quic = gtlsserver_beside(&s, &dir);
    s.p.cli.set_hosts("127.0.0.1 localhost\n198.51.100.2 www.test\n").unwrap();
    s.p.cli.ip(["route", "del", "default"]).unwrap();
    s.p.cli.ip(["-6", "route", "del", "default"]).unwrap();
    let out = s.p.cli.command(NW).args(["path", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no default route: unsatisfied");
    let general: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(general["reason"], "local_network_only", "{general}");

    let anchor = root.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 4] = [
        ("TCP to a literal", vec!["cat", "-z", "--json", "198.51.100.2", "8080"]),
        ("TCP to a name", vec!["cat", "-z", "--json", "www.test", "8080"]),
        (
            "TLS to a literal",
            vec!["cat", "--tls", "--sni", "www.test", "-z", "--json", "--anchor", anchor],
        ),
        (
            "QUIC to a name",
            vec!["cat", "--quic", "--alpn", "h3", "-z", "--json", "--anchor", anchor, "www.test"],
        ),
    ];
    for (label, mut args) in cases {
        match label {
            "TLS to a literal" => args.extend(["198.51.100.2", "4433"]),
            "QUIC to a name" => args.push("4433"),
            _ => {}
        }
        let t = Instant::now();
        let report = nw_report(&s.p.cli, &args);
        let took = t.elapsed();
        eprintln!("no default route, {label}: connected in {took:?} (process start included)");
        assert!(report.get("path").is_none(), "{label}: it waited for a path: {report}");
        assert!(took < Duration::from_millis(800), "{label}: took {took:?}: {report}");
    }

    // Off-link: nothing routes to 203.0.113.5 until the route is added.
    let mut cmd = s.p.cli.command(NW);
    cmd.args(["cat", "-z", "--json", "--timeout", "20", "203.0.113.5", "8080"])
        .stderr(Stdio::piped());
    let mut child = s.p.cli.spawn(cmd).unwrap();
    let mut err = BufReader::new(child.stderr().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("waiting for a usable path") && first.contains("no route"), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    s.p.srv.add_address(&s.p.srv_dev, "203.0.113.5".parse().unwrap(), 32).unwrap();
    let routed = Instant::now();
    s.p.cli.ip(["route", "add", "203.0.113.0/24", "via", "198.51.100.2"]).unwrap();
    let report = finish_waiting(child, err);
    let took = routed.elapsed();
    let steps = report["path"].as_array().unwrap();
    assert_eq!(steps[0]["reason"], "no_route_to_destination", "{report}");
    assert_eq!(steps.last().unwrap()["status"], "satisfied", "{report}");
    eprintln!("off-link destination: connected {took:?} after its route appeared");
    assert!(took < Duration::from_millis(1_000), "connected {took:?} after the route appeared");
    let _ = std::fs::remove_dir_all(&dir);
}
