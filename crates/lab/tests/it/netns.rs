use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use nw_lab::dns::{self, DnsServer, Script};
use nw_lab::nfqueue::{Delayer, Tables};
use nw_lab::{Fault, Lab, Namespace, Pair, Proto, addr, in_namespace};

fn pair() -> (Lab, Pair) {
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let pair = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    (lab, pair)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A listener in `ns` that never accepts: the kernel completes handshakes into its backlog.
fn listen(ns: &Namespace, at: SocketAddr) -> TcpListener {
    in_namespace(ns, move || TcpListener::bind(at)).unwrap().unwrap()
}

/// Connects from inside `ns`; returns the result's kind and how long it took.
fn connect(ns: &Namespace, to: SocketAddr, limit: Duration) -> (std::io::Result<()>, Duration) {
    in_namespace(ns, move || {
        let t = Instant::now();
        let r = TcpStream::connect_timeout(&to, limit).map(drop);
        (r, t.elapsed())
    })
    .unwrap()
}

#[test]
fn dns_server_answers_by_script_with_delays_and_glibc_uses_it() {
    let (_lab, p) = pair();
    let mut script = Script::wildcard(&[addr::SRV_V4], &[addr::SRV_V6]);
    script.delays.aaaa = Duration::from_millis(500);
    script.records.get_mut("*.test").unwrap().https_alpn = vec!["h3".into(), "h2".into()];
    script.nxdomain.insert("gone.test".into());
    script.silent.insert("mute.test".into());
    script.nat64_prefix = Some("64:ff9b::".parse().unwrap());
    let server =
        DnsServer::start(&p.srv, SocketAddr::new(addr::SRV_V4.into(), 53), script).unwrap();
    let at = server.addr();
    let ask = |name: &str, kind| {
        let t = Instant::now();
        let r = dns::query(&p.cli, at, name, kind, Duration::from_millis(1_000)).unwrap();
        (r, t.elapsed())
    };

    let (a, took_a) = ask("www.test", RecordType::A);
    assert_eq!(a.unwrap().answers[0].data, RData::A(hickory_proto::rr::rdata::A(addr::SRV_V4)));
    let (aaaa, took_aaaa) = ask("www.test", RecordType::AAAA);
    assert_eq!(aaaa.unwrap().answers.len(), 1);
    eprintln!("A in {:.1} ms, AAAA (500 ms delay) in {:.1} ms", ms(took_a), ms(took_aaaa));
    // Bounds with room for a stalled VM: A well under AAAA's delay, AAAA not delayed twice.
    assert!(took_a < Duration::from_millis(250), "A is not delayed: {took_a:?}");
    assert!(
        took_aaaa >= Duration::from_millis(500) && took_aaaa < Duration::from_millis(900),
        "{took_aaaa:?}"
    );

    let (https, _) = ask("www.test", RecordType::HTTPS);
    let https = https.unwrap();
    assert!(format!("{:?}", https.answers[0].data).contains("h3"), "{https:?}");
    let (nx, _) = ask("gone.test", RecordType::A);
    assert_eq!(nx.unwrap().metadata.response_code, ResponseCode::NXDomain);
    let (mute, took) = ask("mute.test", RecordType::A);
    assert!(mute.is_none() && took >= Duration::from_millis(900), "silence means no reply at all");
    let (nat64, _) = ask("ipv4only.arpa", RecordType::AAAA);
    let want = dns::synthesize("64:ff9b::".parse().unwrap(), Ipv4Addr::new(192, 0, 0, 170));
    assert_eq!(nat64.unwrap().answers[0].data, RData::AAAA(hickory_proto::rr::rdata::AAAA(want)));

    // glibc inside the namespace, through the per-namespace resolv.conf and hosts.
    p.cli.set_resolv_conf("nameserver 198.51.100.2\noptions timeout:1 attempts:1\n").unwrap();
    p.cli.set_hosts("127.0.0.1 localhost\n203.0.113.7 pinned.test\n").unwrap();
    let out = p.cli.run(["getent", "ahostsv4", "www.test"]).unwrap();
    assert!(out.contains("198.51.100.2"), "{out}");
    let out = p.cli.run(["getent", "ahostsv4", "pinned.test"]).unwrap();
    assert!(out.contains("203.0.113.7"), "{out}");
    assert!(server.seen().iter().any(|s| s.name == "www.test" && s.kind == RecordType::A));

    // The script can change mid-run.
    server.script().nxdomain.insert("www.test".into());
    let (nx, _) = ask("www.test", RecordType::A);
    assert_eq!(nx.unwrap().metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn nfqueue_delayer_holds_matching_packets_and_cleans_up() {
    let (_lab, p) = pair();
    let to = SocketAddr::new(addr::SRV_V4.into(), 8080);
    let _l = listen(&p.srv, to);
    let (r, baseline) = connect(&p.cli, to, Duration::from_secs(2));
    r.unwrap();

    let rule = ["OUTPUT", "-p", "tcp", "-d", "198.51.100.2", "--dport", "8080"];
    let delayer =
        Delayer::start(&p.cli, 7, Duration::from_millis(100), Tables::Ipv4, &rule).unwrap();
    let mut delayed = Vec::new();
    for _ in 0..3 {
        let (r, took) = connect(&p.cli, to, Duration::from_secs(2));
        r.unwrap();
        delayed.push(ms(took));
    }
    delayed.sort_by(f64::total_cmp);
    let median = delayed[1];
    eprintln!("connect: {:.2} ms direct, {delayed:.1?} ms through a 100 ms delayer", ms(baseline));
    // Under 190 ms: held once, not twice (and no SYN retransmission, which takes a second).
    assert!((100.0..190.0).contains(&median), "SYN held {median:.1} ms, want 100 ms + slack");
    assert!(delayer.delayed() >= 3);
    drop(delayer);

    let rules = p.cli.run(["iptables", "-t", "mangle", "-S"]).unwrap();
    assert!(!rules.contains("NFQUEUE"), "rule left behind: {rules}");
    // Held, every connect would take at least 100 ms; the quickest of three says it is not.
    let quickest = (0..3)
        .map(|_| {
            let (r, took) = connect(&p.cli, to, Duration::from_secs(2));
            r.unwrap();
            took
        })
        .min()
        .unwrap();
    assert!(quickest < Duration::from_millis(100), "still delayed after drop: {quickest:?}");
}

#[test]
fn nft_faults_reject_fast_or_blackhole_and_counters_see_attempts() {
    let (_lab, p) = pair();
    let to6 = SocketAddr::new(addr::SRV_V6.into(), 8443);
    let _l = listen(&p.srv, to6);
    let before = p.cli.tcp_counters().unwrap();

    p.cli.fault(addr::SRV_V6.into(), Proto::Tcp, Some(8443), Fault::Reset).unwrap();
    let (r, took) = connect(&p.cli, to6, Duration::from_secs(2));
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    // At once: well under the one-second SYN retransmission a dropped SYN would wait for.
    assert!(took < Duration::from_millis(500), "reject should fail at once: {took:?}");

    p.cli.clear_faults().unwrap();
    p.cli.fault(addr::SRV_V6.into(), Proto::Tcp, Some(8443), Fault::Drop).unwrap();
    let (r, took) = connect(&p.cli, to6, Duration::from_millis(300));
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(300));

    p.cli.clear_faults().unwrap();
    connect(&p.cli, to6, Duration::from_secs(2)).0.unwrap();
    let after = p.cli.tcp_counters().unwrap();
    assert!(after.active_opens >= before.active_opens + 3, "{before:?} → {after:?}");
    assert!(after.attempt_fails > before.attempt_fails, "{before:?} → {after:?}");

    // ICMP unreachable fails fast too, for IPv4 as well.
    let to4 = SocketAddr::new(addr::SRV_V4.into(), 8443);
    let _l4 = listen(&p.srv, to4);
    p.cli.fault(addr::SRV_V4.into(), Proto::Tcp, None, Fault::Unreachable).unwrap();
    let (r, took) = connect(&p.cli, to4, Duration::from_secs(2));
    assert!(r.is_err() && took < Duration::from_millis(500), "{r:?} after {took:?}");
}

#[test]
fn guards_remove_namespaces_files_and_processes() {
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let ns = lab.namespace("gone").unwrap();
    let name = ns.name().to_owned();
    ns.set_hosts("127.0.0.1 localhost\n").unwrap();
    let mut sleeper = ns.command("sleep");
    sleeper.arg("30");
    let child = ns.spawn(sleeper).unwrap();
    let pid = child.id();
    std::mem::forget(child); // the namespace guard must kill it on its own
    drop(ns);
    let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name), "namespace {name} left behind");
    assert!(!std::path::Path::new("/etc/netns").join(&name).exists());
    std::thread::sleep(Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z"), "process {pid} still running: {state}");
}

#[test]
fn spawn_honours_the_callers_stdio() {
    use std::io::{Read, Write};
    let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let ns = lab.namespace("cat").unwrap();
    let mut cmd = ns.command("cat");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = ns.spawn(cmd).unwrap();
    let mut input = child.stdin().unwrap();
    input.write_all(b"through the namespace\n").unwrap();
    drop(input);
    let mut out = String::new();
    child.stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "through the namespace\n");
}

#[test]
fn a_group_child_takes_what_it_started_with_it() {
    // The sleep is the shell's child, not the shell itself (the `; true` keeps sh from
    // exec'ing it): only a signal to the group reaches it.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "sleep 30 & echo $!; wait; true"]).stdout(std::process::Stdio::piped());
    let mut child = nw_lab::Child::spawn_group(cmd).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout().unwrap()), &mut line)
        .unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();
    drop(child);
    std::thread::sleep(Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z"), "{grandchild} still running: {state}");
}
