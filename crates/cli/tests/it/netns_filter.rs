//! `nw filter up` for real: NFQUEUE, conntrack marks, sock_diag and procfs in a lab namespace,
//! with programs running as different users making thousands of short-lived TCP and UDP
//! flows, the rules provider and a provider written in Python. Each flow's outcome is seen by
//! the program that made it; each verdict's process is checked against the real pids.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nw_lab::{Child, Lab, Namespace, Pair, addr};
use serde_json::{Value, json};

use crate::support::{Events, NW};

const PROVIDER: &str = include_str!("providers/filter.py");
const FLOWS: &str = include_str!("programs/flows.py");
const SINK: &str = include_str!("programs/sink.py");
const PYTHON: &str = "/usr/bin/python3";

fn pair() -> Pair {
    Lab::new().and_then(|lab| lab.pair()).unwrap_or_else(|e| panic!("lab setup failed: {e}"))
}

/// The far end: TCP accept-and-close on 7001-7004, UDP echo on 9001-9003.
fn sink(ns: &Namespace) -> Child {
    let mut cmd = ns.command(PYTHON);
    cmd.args([
        "-c", SINK, "tcp:7001", "tcp:7002", "tcp:7003", "tcp:7004", "udp:9001", "udp:9002",
        "udp:9003",
    ]);
    cmd.stdout(Stdio::piped());
    let mut child = ns.spawn(cmd).expect("start the sink");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout().expect("stdout")).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "the sink did not start");
    child
}

/// Runs flows.py in `ns` and returns what it printed.
fn flows(ns: &Namespace, tcp: u16, udp: u16, count: usize, uid: u32, udp_wait: f64) -> Value {
    let mut cmd = ns.command(PYTHON);
    cmd.args(["-c", FLOWS, &addr::SRV_V4.to_string()])
        .args([
            tcp.to_string(),
            udp.to_string(),
            count.to_string(),
            uid.to_string(),
            udp_wait.to_string(),
        ])
        .stdout(Stdio::piped());
    let out = ns.spawn(cmd).map(|mut c| {
        let mut text = String::new();
        let mut r = BufReader::new(c.stdout().expect("stdout"));
        let _ = r.read_line(&mut text);
        text
    });
    let text = out.unwrap_or_else(|e| panic!("flows.py: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("flows.py printed {text:?}: {e}"))
}

fn filter_up(ns: &Namespace, args: &[&str], options: &Value) -> Events {
    let mut cmd = ns.command(NW);
    let options = options.to_string();
    cmd.args(["filter", "up", "--json", "--provider", PYTHON, "--options", &options])
        .args(args)
        .args(["--", "-c", PROVIDER]);
    let mut e = Events::spawn(ns, cmd);
    e.event("ready");
    e.event("provider_started");
    e
}

fn rules_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("rules.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn our_rules_left(ns: &Namespace) -> String {
    let mut out = String::new();
    for tool in ["iptables", "ip6tables"] {
        out += &ns.run([tool, "-S"]).unwrap_or_else(|e| panic!("{tool}: {e}"));
    }
    out.lines().filter(|l| l.contains("NWFILTER")).collect::<Vec<_>>().join("\n")
}

#[test]
fn netns_filter_gives_right_verdicts_with_attribution_to_thousands_of_flows() {
    const N: usize = 10_000;
    let p = pair();
    let _sink = sink(&p.srv);
    // Room for 30,000 connections in a row from one address.
    p.cli
        .run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000"])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = crate::support::Dir::new("filter-rules");
    let rules = rules_file(
        &dir.0,
        "default = \"drop\"\n[[rule]]\naction = \"allow\"\nuid = 1001\n[[rule]]\naction = \"drop\"\nuid = 1002\n[[rule]]\naction = \"ask\"\nuid = 1003\n",
    );
    // Connect latency with no filter, for comparison.
    let bare = flows(&p.cli, 7001, 9001, 2_000, 1001, 2.0);

    let began = Instant::now();
    let mut f = filter_up(&p.cli, &["--rules", &rules], &json!({"allow_ports": [7003, 9003]}));
    let allowed = flows(&p.cli, 7001, 9001, N, 1001, 2.0);
    let dropped = flows(&p.cli, 7002, 9002, N, 1002, 0.05);
    let asked = flows(&p.cli, 7003, 9003, N, 1003, 2.0);
    // The provider's own answer decides: it drops flows to ports it does not allow. (To a UDP
    // port no allowed flow used: a socket that reuses an allowed UDP flow's 5-tuple the
    // instant it closed may still pass under that verdict; see nw_filter::host.)
    let refused_by_provider = flows(&p.cli, 7004, 9002, 200, 1003, 0.05);
    let took = began.elapsed();
    assert_eq!(f.stop(), Some(0), "an orderly stop exits 0");
    let stopped = f.event("stopped");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");

    // 100 % right verdicts, as the programs saw them.
    let n = N as u64;
    assert_eq!(
        (allowed["tcp"]["ok"].as_u64(), allowed["udp"]["echoed"].as_u64()),
        (Some(n), Some(n)),
        "{allowed}"
    );
    assert_eq!(
        dropped["tcp"]["refused"].as_u64(),
        Some(n),
        "every dropped connect fails at once: {dropped}"
    );
    assert_eq!(dropped["udp"]["echoed"].as_u64(), Some(0), "{dropped}");
    assert_eq!(
        (asked["tcp"]["ok"].as_u64(), asked["udp"]["echoed"].as_u64()),
        (Some(n), Some(n)),
        "{asked}"
    );
    assert_eq!(refused_by_provider["tcp"]["refused"].as_u64(), Some(200), "{refused_by_provider}");
    assert_eq!(refused_by_provider["udp"]["echoed"].as_u64(), Some(0), "{refused_by_provider}");

    // Attribution: every flow the host decided names the process that made it.
    let programs: HashMap<u64, (u64, &str)> = [
        (&allowed, 1001, "rule"),
        (&dropped, 1002, "rule"),
        (&asked, 1003, "provider"),
        (&refused_by_provider, 1003, "provider"),
    ]
    .into_iter()
    .map(|(v, uid, by)| (v["pid"].as_u64().unwrap_or_default(), (uid, by)))
    .collect();
    let decided: Vec<&Value> = f.seen.iter().filter(|v| v["event"] == "flow").collect();
    let right = decided
        .iter()
        .filter(|v| {
            let pid = v["flow"]["process"]["pid"].as_u64().unwrap_or_default();
            programs.get(&pid).is_some_and(|(uid, by)| {
                v["flow"]["process"]["uid"].as_u64() == Some(*uid) && v["by"]["by"] == *by
            })
        })
        .count();
    let share = right as f64 / decided.len().max(1) as f64;
    let wrong: Vec<&&Value> = decided
        .iter()
        .filter(|v| {
            !programs.contains_key(&v["flow"]["process"]["pid"].as_u64().unwrap_or_default())
        })
        .take(3)
        .collect();
    assert!(decided.len() as u64 >= 3 * n, "only {} flows decided", decided.len());
    assert!(share >= 0.999, "{right} of {} flows attributed right; e.g. {wrong:#?}", decided.len());
    eprintln!(
        "filter: {} flows decided in {:.1} s, {:.3} % attributed to the right process",
        decided.len(),
        took.as_secs_f64(),
        share * 100.0
    );
    eprintln!(
        "filter: TCP connect p50/p99 ms: no filter {:.3}/{:.3}; rules {:.3}/{:.3}; Python provider {:.3}/{:.3}",
        bare["tcp"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        bare["tcp"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
        allowed["tcp"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        allowed["tcp"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
        asked["tcp"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        asked["tcp"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
    );
}

#[test]
fn netns_filter_fails_open_or_closed_when_the_provider_hangs_or_dies() {
    let p = pair();
    let _sink = sink(&p.srv);
    for (mode, count) in [("hang", 10), ("exit", 50)] {
        for closed in [true, false] {
            let mut args = vec!["--deadline", "300"];
            if closed {
                args.push("--fail-closed");
            }
            let mut f =
                filter_up(&p.cli, &args, &json!({"mode": mode, "allow_ports": [7001, 9001]}));
            let began = Instant::now();
            let out = flows(&p.cli, 7001, 9001, count, 0, 1.0);
            let took = began.elapsed();
            let what =
                format!("provider {mode}s, fail-{}: {out}", if closed { "closed" } else { "open" });
            let c = count as u64;
            if closed {
                assert_eq!(out["tcp"]["refused"].as_u64(), Some(c), "{what}");
                assert_eq!(out["udp"]["echoed"].as_u64(), Some(0), "{what}");
            } else {
                assert_eq!(out["tcp"]["ok"].as_u64(), Some(c), "{what}");
                assert_eq!(out["udp"]["echoed"].as_u64(), Some(c), "{what}");
            }
            // Never a hang: each flow waits at most the deadline (300 ms) and some slack.
            assert!(
                took < Duration::from_secs(2)
                    + Duration::from_millis(700) * u32::try_from(2 * count).unwrap_or(u32::MAX),
                "{what} took {took:?}"
            );
            assert_eq!(f.stop(), Some(0));
            let by_policy =
                f.seen.iter().filter(|v| v["event"] == "flow" && v["by"]["by"] == "policy").count();
            assert!(by_policy >= count, "{what}: only {by_policy} flows by the failure policy");
            if mode == "exit" {
                assert!(
                    f.seen.iter().any(|v| v["event"] == "provider_down"),
                    "{what}: no provider_down event"
                );
            }
            assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
        }
    }
    // A provider that cannot start at all is the command line's mistake: said at once, exit
    // 2, nothing installed (before, the host installed its rules and restarted it for ever).
    let began = Instant::now();
    let out = p
        .cli
        .command("timeout")
        .args(["20", NW, "filter", "up", "--provider", "/nonexistent/provider"])
        .output()
        .unwrap_or_else(|e| panic!("nw filter up: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot start /nonexistent/provider: No such file")
            && err.contains("give the provider's path"),
        "{err}"
    );
    assert!(began.elapsed() < Duration::from_secs(10), "took {:?}", began.elapsed());
    assert_eq!(our_rules_left(&p.cli), "", "rules installed for a provider that cannot start");
}

#[test]
fn netns_filter_list_names_filters_of_every_kind_with_their_owners() {
    use nw_lab::nfqueue::{Delayer, Tables};
    let p = pair();
    p.cli
        .nft("table inet nwlisted {\n chain out {\n type filter hook output priority 10; policy accept;\n tcp dport 9999 counter drop\n }\n}\n")
        .unwrap_or_else(|e| panic!("nft: {e}"));
    p.cli
        .run(["iptables-legacy", "-A", "OUTPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP"])
        .unwrap_or_else(|e| panic!("iptables-legacy: {e}"));
    // An NFQUEUE bound by this test process (the lab's delayer), behind an iptables-nft rule.
    let _queue = Delayer::start(
        &p.cli,
        77,
        Duration::from_millis(1),
        Tables::Ipv4,
        &["OUTPUT", "-p", "udp", "--dport", "9997"],
    )
    .unwrap_or_else(|e| panic!("delayer: {e}"));
    // Only the network namespace is entered: `ip netns exec` would hide the cgroup mounts.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", p.cli.name()))
        .args([NW, "filter", "list", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("nsenter (util-linux): {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let filters = listing["filters"].as_array().cloned().unwrap_or_default();
    let find = |kind: &str, name: &str| {
        filters
            .iter()
            .find(|f| f["kind"] == kind && f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name:?} in {listing:#}"))
    };
    let ours = find("nftables", "inet nwlisted/out");
    assert!(ours["hook"].as_str().unwrap_or("").contains("hook output priority 10"), "{ours}");
    assert_eq!(ours["rules"], 1, "{ours}");
    let legacy = find("iptables_legacy", "ip filter/OUTPUT");
    assert_eq!(legacy["rules"], 1, "{legacy}");
    let mangle = find("nftables", "ip mangle/OUTPUT");
    assert_eq!(mangle["owner"], "iptables-nft", "{mangle}");
    let queue = find("nfqueue", "queue 77");
    let me = format!("pid {} ", std::process::id());
    assert!(
        queue["owner"].as_str().unwrap_or("").starts_with(&me),
        "the queue's owner is this test: {queue}"
    );
    assert_eq!(listing["problems"], json!([]), "{listing:#}");
}

/// Makes many UDP flows (one datagram each, to distinct ports), then times one TCP connect.
const BURST_THEN_CONNECT: &str = r#"
import json, socket, sys, time
host = sys.argv[1]
for port in range(20000, 26000):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"x", (host, port))
    u.close()
t = time.monotonic()
s = socket.socket()
s.settimeout(10)
try:
    s.connect((host, 7001))
    said = "ok"
except OSError as e:
    said = repr(e)
print(json.dumps({"connect": said, "ms": (time.monotonic() - t) * 1000}))
"#;

/// Output nobody reads (a pipe whose reader stopped) holds up no verdict: thousands of flows
/// are decided while `nw filter up --json`'s lines pile up unread, a connect after them is
/// decided at once, and SIGTERM still stops the host in order. And the host sweeps the state
/// files of namespaces that are gone — one of a namespace that had its own namespace's inode
/// before it (the kernel gives inodes again; cookies it does not) among them — and temporary
/// files whose writer died.
#[test]
fn netns_filter_decides_while_nobody_reads_its_output() {
    let p = pair();
    let _sink = sink(&p.srv);
    let state = nw_lab::Scratch::new("filter-state").expect("a scratch directory");
    let dir = state.path();
    let this_ns =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").unwrap());
    // Inode 1 is never a network namespace's; pid 4194305 is past the largest pid_max.
    let cli_ns = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(format!("/run/netns/{}", p.cli.name())).unwrap(),
    );
    let before = format!("{cli_ns}-{}.json", u64::MAX - 1);
    let gone = ["1.log", "1.log.1", "1-7.json", &before].map(|f| dir.join(f));
    let dead_writer = dir.join(format!("{this_ns}.json.4194305.tmp"));
    let kept = dir.join(format!("{this_ns}.log"));
    for f in gone.iter().chain([&dead_writer, &kept]) {
        std::fs::write(f, "{}\n").unwrap();
    }
    let mut cmd = p.cli.command(NW);
    cmd.env("NW_FILTER_STATE_DIR", dir);
    cmd.args(["filter", "up", "--json"]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut host = p.cli.spawn(cmd).expect("start nw filter up");
    let _unread = host.stdout().expect("stdout piped");
    let start = Instant::now();
    while our_rules_left(&p.cli).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(15), "the filter rules never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = python_json(&p.cli, "burst", BURST_THEN_CONNECT, &[&addr::SRV_V4.to_string()]);
    assert_eq!(v["connect"], "ok", "{v}");
    assert!(v["ms"].as_f64().unwrap() < 3000.0, "the connect waited for the output: {v}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(host.id() as libc::pid_t, libc::SIGTERM) };
    let status = host.wait_for(Duration::from_secs(20)).expect("nw filter up stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "an orderly stop");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
    for f in gone.iter().chain([&dead_writer]) {
        assert!(!f.exists(), "{} was not swept", f.display());
    }
    assert!(kept.exists(), "the log of a namespace that exists was removed");
}

const PEEK_SERVER: &str = include_str!("programs/peek_server.py");
const PEEK_CLIENT: &str = include_str!("programs/peek_client.py");

/// peek_server.py in the server namespace, and the connections it reported so far.
struct PeekServer {
    events: Events,
    seen: usize,
}

impl PeekServer {
    fn start(ns: &Namespace, ports: &[u16]) -> Self {
        let mut cmd = ns.command(PYTHON);
        cmd.args(["-c", PEEK_SERVER]).args(ports.iter().map(u16::to_string));
        let mut events = Events::spawn(ns, cmd);
        events.event("ready");
        Self { events, seen: 0 }
    }

    /// The next connection it reports (within 20 s).
    fn next(&mut self) -> Value {
        self.seen += 1;
        self.events.nth(self.seen, Duration::from_secs(20), |v| v["event"] == "conn")
    }
}

/// curl in `ns` asking the server's `port` for / with this Host.
fn curl_host(ns: &Namespace, host: &str, port: u16) -> std::process::Output {
    ns.command("curl")
        .args(["-sS", "-m", "10", "-H", &format!("Host: {host}")])
        .arg(format!("http://{}:{port}/", addr::SRV_V4))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"))
}

/// openssl s_client in `ns` sending a ClientHello with this server name to the server's 8443.
fn s_client(ns: &Namespace, name: &str) -> std::process::Output {
    ns.command("timeout")
        .args(["10", "openssl", "s_client", "-connect", &format!("{}:8443", addr::SRV_V4)])
        .args(["-servername", name])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"))
}

/// Runs the Python `program` (`name` in messages) in `ns` with `args`, to its end, and returns
/// the JSON it printed.
fn python_json(ns: &Namespace, name: &str, program: &str, args: &[&str]) -> Value {
    let out = ns
        .command(PYTHON)
        .args(["-c", program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("{name} {args:?} printed {text:?} ({e}): {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// Runs peek_client.py in `ns` and returns what it printed.
fn peek_client(ns: &Namespace, mode: &str, port: u16, extra: &[&str]) -> Value {
    let (server, port) = (addr::SRV_V4.to_string(), port.to_string());
    let args = [&[mode, server.as_str(), port.as_str()], extra].concat();
    python_json(ns, "peek_client.py", PEEK_CLIENT, &args)
}

/// The messages of type `kind` the provider recorded (`data`, `flow_closed`).
fn recorded(path: &std::path::Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v| v["type"] == kind)
        .collect()
}

/// Peek and pass with real clients: curl's HTTP requests and openssl's ClientHellos are
/// shown to a provider that peeks 1,024 bytes and drops what names blocked.example; not one
/// byte of a dropped flow reaches the server, and the client is told at once. Hostile flows
/// (garbage, a 64 KiB server name, a close mid-peek) each get a verdict. A provider that
/// passes 10 bytes and then never answers: exactly those 10 bytes arrive, then the failure
/// policy. And 50 MB uploads peeked then allowed complete, their throughput printed next to
/// unfiltered ones.
#[test]
fn netns_filter_peeks_at_data_and_lets_through_exactly_what_it_passed() {
    let p = pair();
    let mut server = PeekServer::start(&p.srv, &[8080, 8443, 8444, 8445]);
    let dir = crate::support::Dir::new("filter-peek");
    let record = dir.0.join("data.jsonl");
    // The provider runs as nobody: it may write this file and nothing else here.
    std::fs::write(&record, "").unwrap_or_else(|e| panic!("{e}"));
    for (path, mode) in [(&dir.0, 0o755), (&record, 0o666)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let options = json!({
        "peek_ports": [8080, 8443],
        "allow_ports": [8444, 8445],
        "deny": ["blocked.example"],
        "record": record,
    });
    let mut f = filter_up(&p.cli, &["--deadline", "3000"], &options);

    // HTTP: the Host decides.
    let curl = |host: &str| curl_host(&p.cli, host, 8080);
    let fine = curl("fine.example");
    assert_eq!(String::from_utf8_lossy(&fine.stdout), "ok\n", "{fine:?}");
    let c = server.next();
    assert_eq!(c["ended"], "answered", "{c}");
    let began = Instant::now();
    let blocked = curl("blocked.example");
    let took = began.elapsed();
    assert_eq!(blocked.status.code(), Some(56), "curl is reset: {blocked:?}");
    assert!(took < Duration::from_secs(2), "the dropped request waited {took:?}");
    let c = server.next();
    assert_eq!(c["bytes"], 0, "bytes of a dropped flow reached the server: {c}");
    assert_eq!(c["ended"], "reset", "the server is told the dropped flow is gone: {c}");

    // TLS: the server name in openssl's ClientHello decides.
    let _ = s_client(&p.cli, "fine.example");
    let c = server.next();
    assert!(
        c["bytes"].as_u64() > Some(100) && c["head"].as_str().is_some_and(|h| h.starts_with("16")),
        "{c}"
    );
    let _ = s_client(&p.cli, "blocked.example");
    let c = server.next();
    assert_eq!(c["bytes"], 0, "bytes of a dropped flow reached the server: {c}");
    assert_eq!(c["ended"], "reset", "the server is told the dropped flow is gone: {c}");

    // Hostile flows get a verdict, and the host goes on.
    for (mode, bytes) in [("garbage", 600), ("big_sni", 65_084), ("closes", 5)] {
        let out = peek_client(&p.cli, mode, 8443, &[]);
        let c = server.next();
        assert_eq!(c["bytes"], bytes, "{mode}: {out} {c}");
    }

    // 50 MB uploads: peeked at (1,024 bytes, then allowed) and not; alternating.
    const UPLOAD: u64 = 50_000_000;
    let (mut peeked, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (port, into) in [(8443, &mut peeked), (8445, &mut bare)] {
            let out = peek_client(&p.cli, "upload", port, &[&UPLOAD.to_string()]);
            let c = server.next();
            assert_eq!(c["bytes"].as_u64(), Some(UPLOAD), "port {port}: {out} {c}");
            into.push(out["mb_s"].as_f64().unwrap_or(f64::NAN));
        }
    }
    let (peeked, bare) = (nw_lab::stats::median(&peeked), nw_lab::stats::median(&bare));
    eprintln!(
        "filter: 50 MB upload, median of 3: peeked at then allowed {peeked:.0} MB/s, not filtered {bare:.0} MB/s ({:.2}x)",
        peeked / bare
    );
    // Each upload's close is reported once its socket is done.
    f.nth(6, Duration::from_secs(10), |v| {
        v["event"] == "closed" && v["report"]["bytes_out"].as_u64() >= Some(UPLOAD)
    });

    assert_eq!(f.stop(), Some(0));
    let flows: Vec<&Value> = f.seen.iter().filter(|v| v["event"] == "flow").collect();
    let port = |v: &Value| {
        v["flow"]["remote"].as_str().and_then(|r| r.rsplit(':').next()?.parse::<u16>().ok())
    };
    let peeked_flows: Vec<&&Value> =
        flows.iter().filter(|v| matches!(port(v), Some(8080 | 8443))).collect();
    // fine and blocked over HTTP and TLS, three hostile flows, three uploads.
    assert_eq!(peeked_flows.len(), 10, "{flows:#?}");
    assert!(peeked_flows.iter().all(|v| v["by"]["by"] == "provider"), "{peeked_flows:#?}");
    let drops = peeked_flows.iter().filter(|v| v["decision"] == "drop").count();
    assert_eq!(drops, 2, "{peeked_flows:#?}");
    // The log names each peeked flow by its first bytes: the Host, the server name.
    let named = |name: &str| peeked_flows.iter().filter(|v| v["flow"]["host"] == name).count();
    assert_eq!((named("fine.example"), named("blocked.example")), (2, 2), "{peeked_flows:#?}");
    let shown = recorded(&record, "data");
    assert!(shown.iter().all(|d| d["len"].as_u64() <= Some(1024)), "{shown:#?}");
    // The provider heard when the flows it let through closed, with what they carried: each
    // upload's 50 MB (the kernel counts the SYN and the FIN as one byte each).
    let reports = recorded(&record, "flow_closed");
    let uploads = reports
        .iter()
        .filter(|r| r["bytes_out"].as_u64().is_some_and(|b| (UPLOAD..=UPLOAD + 2).contains(&b)))
        .count();
    assert_eq!(uploads, 6, "three peeked and three plain uploads: {reports:#?}");
    let closed = f.seen.iter().filter(|v| v["event"] == "closed").count();
    assert_eq!(closed, reports.len(), "each report is an event too");
    assert!(shown.iter().any(|d| d["len"] == 5), "the flow closed mid-peek: {shown:#?}");
    assert!(
        shown.iter().any(|d| d["len"] == 1024),
        "the 64 KiB server name, 1,024 bytes of it: {shown:#?}"
    );

    // Pass 10 bytes, then never answer: exactly 10 bytes, then the failure policy (closed).
    std::fs::write(&record, "").unwrap_or_else(|e| panic!("{e}"));
    let options =
        json!({"peek_ports": [8080], "pass_first": 10, "data_mode": "hang", "record": record});
    let mut f = filter_up(&p.cli, &["--deadline", "700", "--fail-closed"], &options);
    let began = Instant::now();
    let out = peek_client(&p.cli, "chunks", 8080, &[]);
    let took = began.elapsed();
    let c = server.next();
    assert_eq!(
        (c["bytes"].as_u64(), c["head"].as_str()),
        (Some(10), Some("30313233343536373839")),
        "{c}"
    );
    assert_eq!(out["ended"], "reset", "{out}");
    assert_eq!(c["ended"], "reset", "the server is told, after exactly the passed bytes: {c}");
    assert!(took < Duration::from_secs(5), "the unanswered flow took {took:?}");
    let shown = recorded(&record, "data");
    let offsets: Vec<(u64, u64)> = shown
        .iter()
        .map(|d| (d["offset"].as_u64().unwrap_or(99), d["len"].as_u64().unwrap_or(99)))
        .collect();
    assert_eq!(offsets, vec![(0, 10), (10, 10)], "{shown:#?}");
    assert_eq!(f.stop(), Some(0));
    let by = f.wait(Duration::from_secs(5), |v| v["event"] == "flow");
    assert_eq!(
        (by["decision"].as_str(), by["by"]["by"].as_str()),
        (Some("drop"), Some("policy")),
        "{by}"
    );
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// A request carried in the SYN itself (TCP Fast Open, as `curl --tcp-fastopen` sends it)
/// is held like any other first bytes: the SYN of a peeked flow goes on without its data,
/// which the client sends again after the handshake, where it is peeked at. A dropped flow's
/// request never reaches the server; an allowed flow's SYN keeps its data.
#[test]
fn netns_filter_holds_a_fast_open_syns_data_until_the_verdict() {
    let p = pair();
    // Data in a SYN without a cookie first, both ways (ip-sysctl.rst: client 0x1 | 0x4,
    // server 0x2 | 0x200).
    for (ns, value) in [(&p.cli, "5"), (&p.srv, "514")] {
        ns.run(["sysctl", "-qw", &format!("net.ipv4.tcp_fastopen={value}")])
            .unwrap_or_else(|e| panic!("sysctl: {e}"));
    }
    let mut server = PeekServer::start(&p.srv, &[8446, 8447]);
    let options = json!({"peek_ports": [8446], "allow_ports": [8447], "deny": ["blocked.example"]});
    let mut f = filter_up(&p.cli, &["--deadline", "3000"], &options);

    // Allowed outright: the SYN goes on whole, and the server acknowledges its data.
    let out = peek_client(&p.cli, "fastopen", 8447, &["fine.example"]);
    assert!(out["answer"].as_str().is_some_and(|a| a.ends_with("ok\n")), "{out}");
    assert_eq!(out["syn_data_acked"], true, "Fast Open is not in use here: {out}");
    assert_eq!(server.next()["ended"], "answered");

    // Peeked and allowed: answered, the request having gone after the handshake.
    let out = peek_client(&p.cli, "fastopen", 8446, &["fine.example"]);
    assert!(out["answer"].as_str().is_some_and(|a| a.ends_with("ok\n")), "{out}");
    assert_eq!(out["syn_data_acked"], false, "the SYN's data went on unpeeked: {out}");
    assert_eq!(server.next()["ended"], "answered");

    // Peeked and dropped: the client is reset at once, and not a byte reaches the server
    // (whose handshake, awaiting the acknowledgement that came with the held data, is reset
    // too, so it may not even accept the connection): the next request it reports with
    // bytes is the next one allowed.
    let began = Instant::now();
    let out = peek_client(&p.cli, "fastopen", 8446, &["blocked.example"]);
    let took = began.elapsed();
    assert_eq!(out["ended"], "reset", "{out}");
    assert!(took < Duration::from_secs(2), "the dropped request waited {took:?}");
    let after = peek_client(&p.cli, "fastopen", 8446, &["fine.example"]);
    assert!(after["answer"].as_str().is_some_and(|a| a.ends_with("ok\n")), "{after}");
    let c = loop {
        let c = server.next();
        if c["bytes"] != 0 {
            break c;
        }
        assert_eq!(c["ended"], "reset", "{c}");
    };
    assert_eq!(c["bytes"], 38, "the dropped request (41 bytes) reached the server: {c}");

    assert_eq!(f.stop(), Some(0));
    let decisions: Vec<(&str, &str)> = f
        .seen
        .iter()
        .filter(|v| v["event"] == "flow")
        .map(|v| (v["flow"]["host"].as_str().unwrap_or("-"), v["decision"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("-", "allow"),
            ("fine.example", "allow"),
            ("blocked.example", "drop"),
            ("fine.example", "allow")
        ],
        "{:#?}",
        f.seen
    );
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// Rules that name hosts: the host reads the name from a flow's first bytes — curl's Host
/// header, openssl's server name — only for flows whose name could change their decision, and
/// decides before a byte reaches the server. A rule that asks the provider about a named flow
/// tells it the name.
#[test]
fn netns_filter_rules_decide_on_the_host_name_in_a_flows_first_bytes() {
    let p = pair();
    let mut server = PeekServer::start(&p.srv, &[8080, 8443, 8444]);
    let dir = crate::support::Dir::new("filter-names");
    let rules = rules_file(
        &dir.0,
        "default = \"allow\"\n[[rule]]\naction = \"drop\"\nhost = \"*.blocked.example\"\nports = \"8080-8443\"\n[[rule]]\naction = \"ask\"\nhost = \"ask.example\"\nports = \"8080-8443\"\n",
    );
    // The provider drops what it is asked about on port 8443 and allows 8080.
    let mut f = filter_up(&p.cli, &["--rules", &rules], &json!({"allow_ports": [8080]}));
    // What, with which client, the name, the port, and whether bytes reach the server.
    let cases = [
        ("a blocked name over HTTP", "curl", "www.blocked.example", 8080, false),
        ("a fine name", "curl", "fine.example", 8080, true),
        ("a name asked of the provider, which allows 8080", "curl", "ask.example", 8080, true),
        ("a blocked server name", "openssl", "www.blocked.example", 8443, false),
        ("a name asked of the provider, which drops 8443", "openssl", "ask.example", 8443, false),
        ("a blocked name on a port no rule names", "curl", "www.blocked.example", 8444, true),
    ];
    for (what, client, name, port, through) in cases {
        let out =
            if client == "curl" { curl_host(&p.cli, name, port) } else { s_client(&p.cli, name) };
        let c = server.next();
        if through {
            assert!(c["bytes"].as_u64() > Some(0), "{what}: {c} {out:?}");
        } else {
            assert_eq!(c["bytes"], 0, "{what}: bytes reached the server: {c} {out:?}");
            assert_eq!(c["ended"], "reset", "{what}: the server is not told: {c}");
        }
    }
    assert_eq!(f.stop(), Some(0));
    let flows: Vec<&Value> = f.seen.iter().filter(|v| v["event"] == "flow").collect();
    let named = |host: &str, by: &str, decision: &str| {
        flows
            .iter()
            .filter(|v| {
                v["flow"]["host"] == host && v["by"]["by"] == by && v["decision"] == decision
            })
            .count()
    };
    assert_eq!(named("www.blocked.example", "rule", "drop"), 2, "{flows:#?}");
    assert_eq!(named("fine.example", "default", "allow"), 1, "{flows:#?}");
    assert_eq!(named("ask.example", "provider", "allow"), 1, "{flows:#?}");
    assert_eq!(named("ask.example", "provider", "drop"), 1, "{flows:#?}");
    // Port 8444: no host rule applies there, so the flow was not peeked at and has no name.
    let unnamed = flows.iter().filter(|v| v["flow"]["host"].is_null()).count();
    assert_eq!(unnamed, 1, "{flows:#?}");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

const UDP_REUSE: &str = include_str!("programs/udp_reuse.py");

/// A UDP socket that takes the ports of an allowed one just closed is asked about afresh: a
/// process of an allowed user sends from a port and exits, and a process of a refused user
/// sends from the same port to the same peer — at once (200 times), and 50 ms later (100
/// times). Before the host forgot a closed socket's flows (sock_diag destroy notifications)
/// and deleted their conntrack entries, every second one passed under the first's verdict.
/// At once, a few may still slip through while the notification is on its way; 50 ms later,
/// none.
#[test]
fn netns_filter_a_new_udp_socket_on_a_closed_ones_ports_is_asked_afresh() {
    let p = pair();
    let _sink = sink(&p.srv);
    let dir = crate::support::Dir::new("filter-reuse");
    let rules =
        rules_file(&dir.0, "default = \"drop\"\n[[rule]]\naction = \"allow\"\nuid = 1001\n");
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up", "--json", "--rules", &rules]);
    let mut f = Events::spawn(&p.cli, cmd);
    f.event("ready");
    let reuse = |count: usize, first: u16, gap: &str| -> Value {
        let (server, count, first) =
            (addr::SRV_V4.to_string(), count.to_string(), first.to_string());
        let args = [server.as_str(), "9001", &count, &first, "1001", "1002", gap];
        python_json(&p.cli, "udp_reuse.py", UDP_REUSE, &args)
    };
    let at_once = reuse(200, 23000, "0");
    let later = reuse(100, 24000, "0.05");
    assert_eq!(f.stop(), Some(0));
    eprintln!(
        "filter: datagrams of a refused user passing on an allowed socket's reused ports: {} of 200 at once, {} of 100 50 ms later",
        at_once["b"], later["b"]
    );
    assert_eq!(
        (at_once["a"].as_u64(), later["a"].as_u64()),
        (Some(200), Some(100)),
        "the allowed user's flows"
    );
    assert!(at_once["b"].as_u64() <= Some(10), "at once: {at_once}");
    assert_eq!(later["b"], 0, "50 ms later: {later}");
    let refused = f
        .seen
        .iter()
        .filter(|e| {
            e["event"] == "flow" && e["flow"]["process"]["uid"] == 1002 && e["decision"] == "drop"
        })
        .count();
    assert!(refused >= 280, "only {refused} reuses were asked about, attributed and refused");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// The UDP flows whose closes are reported: `connected HOST` sends three 100-byte datagrams
/// on a connected socket to HOST:9001, reads the echoes and closes; `kept HOST` sends two
/// 50-byte ones from an unconnected socket and keeps it until killed; `server` (here)
/// answers each datagram to 9005 with it twice until killed; `peer HOST` (there) sends it
/// four 10-byte ones. Each prints what it got.
const UDP_REPORTS: &str = r#"
import json, socket, sys, threading
mode = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); got = 0
if mode == "server":
    s.settimeout(None); s.bind(("0.0.0.0", 9005)); print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048); s.sendto(data * 2, peer)
if mode == "connected":
    s.connect((sys.argv[2], 9001))
    for _ in range(3):
        s.send(b"c" * 100); got += len(s.recv(2048))
    s.close()
if mode == "kept":
    for _ in range(2):
        s.sendto(b"k" * 50, (sys.argv[2], 9001)); got += len(s.recvfrom(2048)[0])
if mode == "peer":
    s.connect((sys.argv[2], 9005))
    for _ in range(4):
        s.send(b"p" * 10); got += len(s.recv(2048))
print(json.dumps({"got": got}), flush=True)
if mode == "kept":
    threading.Event().wait()
"#;

/// A closed UDP flow is reported to the provider that allowed it, with the datagrams and
/// payload bytes each way as conntrack counted them (turned on for the host's run, off
/// again after), as its socket closes: a connected socket's flow, an unconnected one's, and
/// a peer's flow to a server here (where "out" is the server's answers). (A flow whose
/// socket stays open is reported when conntrack lets its idle entry go: with the UDP
/// timeouts at 2 s, measured 20 and 42 s later here, the kernel's sweep being lazy.)
#[test]
fn netns_filter_reports_what_closed_udp_flows_carried() {
    let p = pair();
    let _sink = sink(&p.srv);
    let acct =
        || p.cli.run(["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).unwrap_or_default();
    let mut server = p.cli.command(PYTHON);
    server.args(["-c", UDP_REPORTS, "server"]).stdout(Stdio::piped());
    let mut server = p.cli.spawn(server).expect("start the server");
    let mut line = String::new();
    let _ = BufReader::new(server.stdout().expect("stdout")).read_line(&mut line);
    assert_eq!(line.trim(), "ready");
    assert_eq!(acct().trim(), "0", "counting is off before the host runs");
    let mut f = filter_up(&p.cli, &[], &json!({"allow_ports": [9001, 9005]}));
    assert_eq!(acct().trim(), "1", "counting is on while it runs");
    let srv = addr::SRV_V4.to_string();
    let connected = python_json(&p.cli, "connected", UDP_REPORTS, &["connected", &srv]);
    assert_eq!(connected["got"], 300, "{connected}");
    let mut kept = p.cli.command(PYTHON);
    kept.args(["-c", UDP_REPORTS, "kept", &srv]).stdout(Stdio::piped());
    let mut kept = p.cli.spawn(kept).expect("start the kept socket");
    line.clear();
    let _ = BufReader::new(kept.stdout().expect("stdout")).read_line(&mut line);
    assert_eq!(line.trim(), r#"{"got": 100}"#);
    let peer = python_json(&p.srv, "peer", UDP_REPORTS, &["peer", &addr::CLI_V4.to_string()]);
    assert_eq!(peer["got"], 80, "{peer}");
    let id_of = |f: &Events, port: u16, direction: &str| -> Vec<u64> {
        f.seen
            .iter()
            .filter(|v| {
                let end = if direction == "inbound" { "local" } else { "remote" };
                v["event"] == "flow"
                    && v["flow"]["direction"] == direction
                    && v["flow"]["transport"] == "udp"
                    && v["flow"]["remote"].as_str().is_some()
                    && v["flow"][end].as_str().is_some_and(|a| a.ends_with(&format!(":{port}")))
            })
            .filter_map(|v| v["flow"]["id"].as_u64())
            .collect()
    };
    // Each flow as its socket closes: the connected one's now, the others' once killed.
    let report = |f: &mut Events, id: u64| {
        f.wait(Duration::from_secs(5), |v| v["event"] == "closed" && v["report"]["id"] == id)
    };
    let began = Instant::now();
    let _ = f.nth(3, Duration::from_secs(5), |v| v["event"] == "flow");
    let to_sink = id_of(&f, 9001, "outbound");
    assert_eq!(to_sink.len(), 2, "the connected and the kept socket's flows: {:#?}", f.seen);
    let first = report(&mut f, to_sink[0]);
    drop(kept);
    let second = report(&mut f, to_sink[1]);
    let inbound = id_of(&f, 9005, "inbound");
    assert_eq!(inbound.len(), 1, "{:#?}", f.seen);
    drop(server);
    let answered = report(&mut f, inbound[0]);
    eprintln!("filter: three UDP close reports within {:?}", began.elapsed());
    let counts = |v: &Value| {
        let r = &v["report"];
        [&r["segments_out"], &r["bytes_out"], &r["segments_in"], &r["bytes_in"]]
            .map(|n| n.as_u64().unwrap_or(u64::MAX))
    };
    assert_eq!(counts(&first), [3, 300, 3, 300], "the connected socket's: {first}");
    assert_eq!(counts(&second), [2, 100, 2, 100], "the kept socket's: {second}");
    assert_eq!(counts(&answered), [4, 80, 4, 40], "the server's answers out: {answered}");
    assert_eq!(f.stop(), Some(0));
    assert_eq!(acct().trim(), "0", "counting is off again after the host");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");

    // A killed host leaves counting on; status says so, and `nw filter down` turns it off.
    let mut f = filter_up(&p.cli, &[], &json!({"allow_ports": [9001]}));
    assert_eq!(acct().trim(), "1");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(libc::pid_t::try_from(f.child.id()).expect("a pid"), libc::SIGKILL) };
    let _ = f.child.wait_for(Duration::from_secs(5));
    assert_eq!(acct().trim(), "1", "a killed host cannot turn counting off");
    let status = p.cli.command(NW).args(["filter", "status"]).output().expect("nw filter status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("nf_conntrack_acct"), "{status}");
    let down = p.cli.command(NW).args(["filter", "down"]).output().expect("nw filter down");
    let said = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(0), "{said}");
    assert!(said.contains("off again"), "{said}");
    assert_eq!(acct().trim(), "0", "nw filter down turned counting off again");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// Servers in the filtered namespace: TCP accept on 7001 and 7002, UDP echo on 9001 and 9002;
/// prints its pid once listening.
const INBOUND_SERVER: &str = r#"
import os, socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048); s.sendto(data, peer)
for f, port in ((tcp, 7001), (tcp, 7002), (udp, 9001), (udp, 9002)):
    threading.Thread(target=f, args=(port,), daemon=True).start()
print(os.getpid(), flush=True)
threading.Event().wait()
"#;

/// The far end's client: what each connect and each datagram to the filtered host met, and
/// how long that took.
const INBOUND_CLIENT: &str = r#"
import json, socket, sys, time
host, out = sys.argv[1], {}
for port in (7001, 7002):
    s = socket.socket(); s.settimeout(5); t = time.monotonic()
    try:
        s.connect((host, port)); r = "connected"
    except Exception as e:
        r = type(e).__name__
    out[f"tcp{port}"] = [r, round(time.monotonic() - t, 3)]; s.close()
for port in (9001, 9002):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect((host, port))
    t = time.monotonic()
    try:
        s.send(b"hi"); r = "echoed" if s.recv(100) == b"hi" else "other"
    except Exception as e:
        r = type(e).__name__
    out[f"udp{port}"] = [r, round(time.monotonic() - t, 3)]
print(json.dumps(out))
"#;

/// Inbound flows: a peer's connection to a server in the filtered namespace and its datagram
/// to a bound socket are queued, attributed to the server's process (the socket they reach)
/// and decided by rules on the service's port (`local_ports`): the refused connect fails at
/// once with a reset, the refused datagram is answered with ICMP administratively prohibited,
/// and the allowed ones go through — replies included, never queued.
#[test]
fn netns_filter_decides_inbound_flows_by_the_service_port_with_the_listening_process() {
    let p = pair();
    let mut server = p.cli.command(PYTHON);
    server.args(["-c", INBOUND_SERVER]).stdout(Stdio::piped());
    let mut server = p.cli.spawn(server).expect("start the servers");
    let mut line = String::new();
    let _ = BufReader::new(server.stdout().expect("stdout")).read_line(&mut line);
    let pid: u64 = line.trim().parse().unwrap_or_else(|_| panic!("the servers said {line:?}"));
    let dir = crate::support::Dir::new("filter-inbound");
    let rules = rules_file(
        &dir.0,
        "default = \"allow\"\n\
         [[rule]]\naction = \"drop\"\ndirection = \"inbound\"\nlocal_ports = 7002\n\
         [[rule]]\naction = \"drop\"\ndirection = \"inbound\"\ntransport = \"udp\"\nlocal_ports = \"9002-9002\"\n",
    );
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up", "--json", "--rules", &rules]);
    let mut f = Events::spawn(&p.cli, cmd);
    f.event("ready");
    let met = python_json(&p.srv, "the client", INBOUND_CLIENT, &[&addr::CLI_V4.to_string()]);
    assert_eq!(f.stop(), Some(0), "{met}");
    drop(server);
    assert_eq!(met["tcp7001"][0], "connected", "{met}");
    assert_eq!(met["tcp7002"][0], "ConnectionRefusedError", "{met}");
    assert!(met["tcp7002"][1].as_f64() < Some(2.0), "the refused connect waited: {met}");
    assert_eq!(met["udp9001"][0], "echoed", "{met}");
    // ICMP administratively prohibited reaches the connected socket as "no route to host".
    assert_eq!(met["udp9002"][0], "OSError", "{met}");
    assert!(met["udp9002"][1].as_f64() < Some(2.0), "the refused datagram waited: {met}");
    let flows: Vec<&Value> = f.seen.iter().filter(|v| v["event"] == "flow").collect();
    let decided = |port: u16, decision: &str| {
        flows.iter().any(|v| {
            v["flow"]["direction"] == "inbound"
                && v["flow"]["local"].as_str().is_some_and(|l| l.ends_with(&format!(":{port}")))
                && v["flow"]["process"]["pid"].as_u64() == Some(pid)
                && v["decision"] == decision
        })
    };
    for (port, decision) in [(7001, "allow"), (7002, "drop"), (9001, "allow"), (9002, "drop")] {
        assert!(decided(port, decision), "port {port}: {decision} by the server {pid}: {flows:#?}");
    }
    assert!(flows.iter().all(|v| v["flow"]["direction"] == "inbound"), "{flows:#?}");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// The peer's bytes peeked at: a real web server's answers (Python's http.server) held until
/// the provider has seen them whole, and a request to a server here held until the provider
/// has seen it. What the provider drops reaches neither program, and both ends are reset at
/// once (the server here too, though none of its own packets were held).
/// Python's http.server on the server's 8091, serving `fine.txt` ("all fine") and
/// `secret.txt` (3,000 bytes, then "forbidden") from a directory in `dir`, once it answers;
/// and a record file the provider (running as nobody) may write.
fn web_site(p: &Pair, dir: &std::path::Path) -> (Child, std::path::PathBuf) {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(site.join("fine.txt"), "all fine\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(site.join("secret.txt"), format!("{}forbidden\n", "x".repeat(3000)))
        .unwrap_or_else(|e| panic!("{e}"));
    let record = dir.join("data.jsonl");
    std::fs::write(&record, "").unwrap_or_else(|e| panic!("{e}"));
    for (path, mode) in [(dir, 0o755), (&site, 0o755), (&record, 0o666)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut web = p.srv.command(PYTHON);
    web.args(["-m", "http.server", "8091", "--bind", &addr::SRV_V4.to_string()])
        .arg("--directory")
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let web = p.srv.spawn(web).expect("start http.server");
    let fine_url = format!("http://{}:8091/fine.txt", addr::SRV_V4);
    let began = Instant::now();
    while !p
        .srv
        .command("curl")
        .args(["-sf", "-o", "/dev/null", &fine_url])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(began.elapsed() < Duration::from_secs(10), "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (web, record)
}

/// curl in `ns` fetching `url` (with `Host: host` when given): its output and how long it took.
fn curl_timed(ns: &Namespace, url: &str, host: Option<&str>) -> (std::process::Output, Duration) {
    let began = Instant::now();
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "-m", "10"]);
    if let Some(host) = host {
        cmd.args(["-H", &format!("Host: {host}")]);
    }
    let out = cmd.arg(url).output().unwrap_or_else(|e| panic!("curl: {e}"));
    (out, began.elapsed())
}

#[test]
fn netns_filter_peeks_at_the_peers_bytes_answers_and_requests_alike() {
    let p = pair();
    let dir = crate::support::Dir::new("filter-peek-in");
    let (_web, record) = web_site(&p, &dir.0);
    let fine_url = format!("http://{}:8091/fine.txt", addr::SRV_V4);
    // A server here (behind the filter) for requests the peer opens.
    let mut here = PeekServer::start(&p.cli, &[8092]);
    let options =
        json!({"peek_in_ports": [8091, 8092], "deny": ["forbidden", "secret"], "record": record});
    let mut f = filter_up(&p.cli, &["--deadline", "3000"], &options);

    let curl = |ns: &Namespace, url: &str| curl_timed(ns, url, None);
    // Answers: the provider sees each whole (it peeks again until the server closes).
    let (fine, _) = curl(&p.cli, &fine_url);
    assert_eq!(String::from_utf8_lossy(&fine.stdout), "all fine\n", "{fine:?}");
    let (secret, took) = curl(&p.cli, &format!("http://{}:8091/secret.txt", addr::SRV_V4));
    assert_eq!(secret.status.code(), Some(56), "curl is reset: {secret:?}");
    assert!(secret.stdout.is_empty(), "bytes of a dropped answer reached curl: {secret:?}");
    assert!(took < Duration::from_secs(2), "the dropped answer waited {took:?}");

    // Requests to the server here: held until the provider saw them.
    let here_url = |path: &str| format!("http://{}:8092/{path}", addr::CLI_V4);
    let (fine, _) = curl(&p.srv, &here_url("fine"));
    assert_eq!(String::from_utf8_lossy(&fine.stdout), "ok\n", "{fine:?}");
    let c = here.next();
    assert_eq!(c["ended"], "answered", "{c}");
    let (secret, took) = curl(&p.srv, &here_url("secret"));
    assert_eq!(secret.status.code(), Some(56), "the peer's curl is reset: {secret:?}");
    assert!(took < Duration::from_secs(2), "the dropped request waited {took:?}");
    let c = here.next();
    assert_eq!(c["bytes"], 0, "bytes of a dropped request reached the server here: {c}");
    assert_eq!(c["ended"], "reset", "the server here is told the dropped flow is gone: {c}");

    assert_eq!(f.stop(), Some(0));
    let flows: Vec<&Value> = f.seen.iter().filter(|v| v["event"] == "flow").collect();
    let decisions: Vec<(&str, &str)> = flows
        .iter()
        .map(|v| {
            (v["flow"]["direction"].as_str().unwrap_or("?"), v["decision"].as_str().unwrap_or("?"))
        })
        .collect();
    // The first curl of http.server waited for it before the filter; then two answers, two
    // requests.
    assert_eq!(
        decisions,
        vec![
            ("outbound", "allow"),
            ("outbound", "drop"),
            ("inbound", "allow"),
            ("inbound", "drop")
        ],
        "{flows:#?}"
    );
    assert!(flows.iter().all(|v| v["by"]["by"] == "provider"), "{flows:#?}");
    let shown = recorded(&record, "data");
    assert!(shown.iter().all(|d| d["direction"] == "inbound"), "only the peer's bytes: {shown:#?}");
    // The secret answer was shown whole: its headers, then its body with them.
    assert!(
        shown.iter().any(|d| d["len"].as_u64() > Some(3000)),
        "the answer was seen past its headers: {shown:#?}"
    );
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// A flow whose host name the rules read first, then ask the provider about, can have the
/// peer's bytes peeked at too: the answer of an allowed request is held until the provider
/// saw it, and a forbidden one never reaches curl — whether the provider looks at the answer
/// alone or at the request first and then the answer.
#[test]
fn netns_filter_peeks_at_the_answer_of_a_flow_the_rules_named_first() {
    let p = pair();
    let dir = crate::support::Dir::new("filter-named-in");
    let (_web, record) = web_site(&p, &dir.0);
    let rules = rules_file(
        &dir.0,
        "default = \"allow\"\n[[rule]]\naction = \"ask\"\nhost = \"named.example\"\nports = \"8091\"\n",
    );
    let url = |path: &str| format!("http://{}:8091/{path}", addr::SRV_V4);
    for (what, extra) in [
        ("the answer alone", json!({})),
        ("the request, then the answer", json!({"peek_ports": [8091], "pass_requests": true})),
    ] {
        std::fs::write(&record, "").unwrap_or_else(|e| panic!("{e}"));
        let mut options = json!({"peek_in_ports": [8091], "deny": ["forbidden"], "record": record});
        if let (Some(o), Some(more)) = (options.as_object_mut(), extra.as_object()) {
            o.extend(more.clone());
        }
        let mut f = filter_up(&p.cli, &["--rules", &rules, "--deadline", "3000"], &options);
        let (fine, _) = curl_timed(&p.cli, &url("fine.txt"), Some("named.example"));
        assert_eq!(String::from_utf8_lossy(&fine.stdout), "all fine\n", "{what}: {fine:?}");
        let (secret, took) = curl_timed(&p.cli, &url("secret.txt"), Some("named.example"));
        assert_eq!(secret.status.code(), Some(56), "{what}: curl is reset: {secret:?}");
        assert!(secret.stdout.is_empty(), "{what}: the forbidden answer reached curl");
        assert!(took < Duration::from_secs(2), "{what}: the dropped answer waited {took:?}");
        assert_eq!(f.stop(), Some(0));
        let decided: Vec<(String, String, String)> = f
            .seen
            .iter()
            .filter(|v| v["event"] == "flow")
            .map(|v| {
                let s = |v: &Value| v.as_str().map_or("?".to_owned(), str::to_owned);
                (s(&v["flow"]["host"]), s(&v["by"]["by"]), s(&v["decision"]))
            })
            .collect();
        assert_eq!(
            decided,
            [("named.example", "provider", "allow"), ("named.example", "provider", "drop")]
                .map(|(h, b, d)| (h.to_owned(), b.to_owned(), d.to_owned())),
            "{what}: {:#?}",
            f.seen
        );
        let shown = recorded(&record, "data");
        let answers = shown.iter().filter(|d| d["direction"] == "inbound").count();
        assert!(answers >= 2, "{what}: both answers were shown: {shown:#?}");
        // The request the host read the name from is shown only when the provider asked for
        // this host's bytes (a close may be shown after it).
        let requests = shown.iter().filter(|d| d["direction"] == "outbound").count();
        let answer_alone = extra.as_object().is_some_and(serde_json::Map::is_empty);
        assert!(if answer_alone { requests == 0 } else { requests >= 2 }, "{what}: {shown:#?}");
    }
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// Resolves each NAME (glibc, the namespace's resolv.conf), then sends from a new socket to
/// its address: `udp NAME PORT` one datagram, waiting a second for its echo; `tcp NAME PORT` a
/// line that is neither TLS nor HTTP, then reads to the end. Prints one JSON object: for each
/// name, how it ended ("echoed", "eof", or the errno's name).
const RESOLVE_AND_SEND: &str = r#"
import errno, json, socket, sys
out = {}
for kind, name, port in zip(*[iter(sys.argv[1:])] * 3):
    ip = socket.getaddrinfo(name, int(port), socket.AF_INET)[0][4][0]
    try:
        if kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1)
            s.connect((ip, int(port)))
            s.send(b"x")
            s.recv(64)
            out[kind + " " + name] = "echoed"
        else:
            s = socket.create_connection((ip, int(port)), timeout=5)
            s.sendall(b"hello, no name in here\n")
            while s.recv(4096):
                pass
            out[kind + " " + name] = "eof"
    except socket.timeout:
        out[kind + " " + name] = "timeout"
    except OSError as e:
        out[kind + " " + name] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out))
"#;

/// Flows are named by the DNS answers this host received: a UDP flow to an address a name
/// resolved to is dropped by a rule for that name (UDP has no first bytes that name it, a QUIC
/// flow none in the clear), and a TCP flow whose first bytes name nothing (neither a
/// ClientHello nor an HTTP request) keeps the name its address was looked up by. Answers pass
/// through at once; flows by other names, to other addresses, go on.
#[test]
fn netns_filter_names_flows_by_the_dns_answers_this_host_received() {
    use nw_lab::dns::{DnsServer, Records, Script};
    let p = pair();
    let (udp_ip, tcp_ip): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        ("203.0.113.7".parse().unwrap(), "203.0.113.8".parse().unwrap());
    for ip in [udp_ip, tcp_ip] {
        p.srv.add_address("lo", ip.into(), 32).unwrap_or_else(|e| panic!("{e}"));
    }
    let _sink = sink(&p.srv);
    let mut server = PeekServer::start(&p.srv, &[8448]);
    let mut script = Script { ttl: 60, ..Script::default() };
    for (name, ip) in [
        ("fine.example", addr::SRV_V4),
        ("udp-blocked.example", udp_ip),
        ("tcp-blocked.example", tcp_ip),
    ] {
        script.records.insert(name.into(), Records { a: vec![ip], ..Records::default() });
    }
    let _dns = DnsServer::start(&p.srv, (addr::SRV_V4, 53).into(), script)
        .unwrap_or_else(|e| panic!("the DNS server: {e}"));
    p.cli
        .set_resolv_conf(&format!("nameserver {}\n", addr::SRV_V4))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = crate::support::Dir::new("filter-dns");
    let rules = rules_file(
        &dir.0,
        "default = \"allow\"\n[[rule]]\naction = \"drop\"\nhost = \"udp-blocked.example\"\ntransport = \"udp\"\n[[rule]]\naction = \"drop\"\nhost = \"tcp-blocked.example\"\ntransport = \"tcp\"\n",
    );
    let mut f = filter_up(&p.cli, &["--rules", &rules], &json!({}));
    let out = python_json(
        &p.cli,
        "resolve-and-send",
        RESOLVE_AND_SEND,
        &[
            "udp",
            "fine.example",
            "9001",
            "udp",
            "udp-blocked.example",
            "9001",
            "tcp",
            "tcp-blocked.example",
            "8448",
            "tcp",
            "fine.example",
            "8448",
        ],
    );
    let (blocked, fine) = (server.next(), server.next());
    assert_eq!((&blocked["bytes"], &blocked["ended"]), (&json!(0), &json!("reset")), "{blocked}");
    assert_eq!(fine["bytes"], 23, "{fine}");
    assert_eq!(f.stop(), Some(0));
    assert_eq!(
        out,
        json!({
            "udp fine.example": "echoed",
            "udp udp-blocked.example": "EHOSTUNREACH",
            "tcp tcp-blocked.example": "ECONNRESET",
            "tcp fine.example": "eof",
        }),
        "{:#?}",
        f.seen
    );
    // Four lookups, each an A answer naming one address: three addresses named.
    let stopped = f.seen.iter().find(|v| v["event"] == "stopped").cloned().unwrap_or_default();
    let stats = &stopped["stats"];
    assert!(stats["dns_answers"].as_u64() >= Some(4), "{stopped}");
    assert_eq!(stats["dns_named"], 3, "{stopped}");
    let decided: Vec<(String, String, String)> = f
        .seen
        .iter()
        .filter(|v| v["event"] == "flow")
        .filter(|v| v["flow"]["remote"].as_str().is_some_and(|r| !r.ends_with(":53")))
        .map(|v| {
            let s = |v: &Value| v.as_str().map_or("?".to_owned(), str::to_owned);
            (s(&v["flow"]["host"]), s(&v["by"]["by"]), s(&v["decision"]))
        })
        .collect();
    let want = [
        ("fine.example", "default", "allow"),
        ("udp-blocked.example", "rule", "drop"),
        ("tcp-blocked.example", "rule", "drop"),
        ("fine.example", "default", "allow"),
    ]
    .map(|(h, b, d)| (h.to_owned(), b.to_owned(), d.to_owned()));
    assert_eq!(decided, want, "{:#?}", f.seen);
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// A DNS server over TCP only (RFC 1035 §4.2.2), on ADDRESS:53: A records from the NAME=IP
/// arguments, no AAAA, NXDOMAIN for other names; each answer written on its own — a `split-`
/// name's in three segments (the length alone, then the message in two), as a message may
/// come (RFC 7766 §8).
const TCP_DNS_SERVER: &str = r#"
import socket, struct, sys, threading, time
records = dict(a.split("=") for a in sys.argv[2:])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 53)); s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        while True:
            head = c.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return
            msg = c.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
            i, labels = 12, []
            while msg[i]:
                labels.append(msg[i + 1:i + 1 + msg[i]].decode()); i += 1 + msg[i]
            name, qtype = ".".join(labels).lower(), struct.unpack("!H", msg[i + 1:i + 3])[0]
            answer = b""
            if name in records and qtype == 1:
                answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(records[name])
            flags = 0x8180 | (0 if name in records else 3)
            reply = msg[:2] + struct.pack("!HHHHH", flags, 1, 1 if answer else 0, 0, 0) + msg[12:i + 5] + answer
            whole = struct.pack("!H", len(reply)) + reply
            if name.startswith("split-"):
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for part in (whole[:1], whole[1:20], whole[20:]):
                    c.sendall(part); time.sleep(0.05)
            else:
                c.sendall(whole)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// DNS answers over TCP name flows too (a resolver asks again over TCP when an answer is
/// truncated; glibc's `options use-vc` always does): a UDP flow to an address a TCP answer
/// gave for a blocked name is dropped — also when the answer came in three segments — and one
/// to a fine name's goes on.
#[test]
fn netns_filter_names_flows_by_dns_answers_over_tcp() {
    let p = pair();
    let blocked_ip: std::net::Ipv4Addr = "203.0.113.9".parse().unwrap();
    let split_ip: std::net::Ipv4Addr = "203.0.113.10".parse().unwrap();
    p.srv.add_address("lo", blocked_ip.into(), 32).unwrap_or_else(|e| panic!("{e}"));
    p.srv.add_address("lo", split_ip.into(), 32).unwrap_or_else(|e| panic!("{e}"));
    let _sink = sink(&p.srv);
    let mut dns = p.srv.command(PYTHON);
    dns.args(["-c", TCP_DNS_SERVER, &addr::SRV_V4.to_string()])
        .arg(format!("tcp-blocked.example={blocked_ip}"))
        .arg(format!("split-blocked.example={split_ip}"))
        .arg(format!("fine.example={}", addr::SRV_V4))
        .stdout(Stdio::piped());
    let mut dns = p.srv.spawn(dns).expect("start the DNS server");
    let mut line = String::new();
    let _ = BufReader::new(dns.stdout().expect("stdout")).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "the DNS server did not start");
    p.cli
        .set_resolv_conf(&format!("nameserver {}\noptions use-vc\n", addr::SRV_V4))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = crate::support::Dir::new("filter-dns-tcp");
    let rules = rules_file(
        &dir.0,
        "default = \"allow\"\n[[rule]]\naction = \"drop\"\nhost = \"tcp-blocked.example\"\ntransport = \"udp\"\n[[rule]]\naction = \"drop\"\nhost = \"split-blocked.example\"\ntransport = \"udp\"\n",
    );
    let mut f = filter_up(&p.cli, &["--rules", &rules], &json!({}));
    let args = [
        "udp",
        "tcp-blocked.example",
        "9001",
        "udp",
        "split-blocked.example",
        "9001",
        "udp",
        "fine.example",
        "9001",
    ];
    let out = python_json(&p.cli, "resolve-and-send", RESOLVE_AND_SEND, &args);
    assert_eq!(f.stop(), Some(0));
    assert_eq!(
        out,
        json!({
            "udp tcp-blocked.example": "EHOSTUNREACH",
            "udp split-blocked.example": "EHOSTUNREACH",
            "udp fine.example": "echoed",
        }),
        "{:#?}",
        f.seen
    );
    let stopped = f.seen.iter().find(|v| v["event"] == "stopped").cloned().unwrap_or_default();
    assert_eq!(stopped["stats"]["dns_named"], 3, "{stopped}");
    let to_53: Vec<&Value> = f
        .seen
        .iter()
        .filter(|v| v["event"] == "flow")
        .filter(|v| v["flow"]["remote"].as_str().is_some_and(|r| r.ends_with(":53")))
        .collect();
    assert!(
        to_53.iter().all(|v| v["flow"]["transport"] == "tcp"),
        "the lookups went over TCP: {to_53:#?}"
    );
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// A UDP server here that takes one datagram as `uid`, echoes it and exits: prints `ready`
/// once bound, then `got` or `none` (nothing within 3 s).
const ONE_DATAGRAM_SERVER: &str = r#"
import os, socket, sys
uid, port = int(sys.argv[1]), int(sys.argv[2])
os.setuid(uid)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
s.settimeout(3)
try:
    data, peer = s.recvfrom(64); s.sendto(data, peer); print("got", flush=True)
except socket.timeout:
    print("none", flush=True)
"#;

/// The peer's side: one datagram from a fixed port, and whether it was echoed.
const ONE_DATAGRAM_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.5); s.send(b"x")
try:
    s.recv(64); print("echoed")
except Exception as e:
    print(type(e).__name__)
"#;

/// The inbound side of the reuse check: a server here allowed to take a peer's datagrams
/// exits, and a server of a refused user binds the same port; the same peer, from the same
/// port, is asked about afresh, not let through under the first server's verdict (the closed
/// socket's conntrack entry is deleted whichever end started the flow).
#[test]
fn netns_filter_a_new_server_on_a_closed_ones_port_is_asked_afresh_for_the_same_peer() {
    let p = pair();
    let dir = crate::support::Dir::new("filter-reuse-in");
    let rules = rules_file(
        &dir.0,
        "default = \"drop\"\n[[rule]]\naction = \"allow\"\ndirection = \"inbound\"\nuid = 1001\n",
    );
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up", "--json", "--rules", &rules]);
    let mut f = Events::spawn(&p.cli, cmd);
    f.event("ready");
    let serve = |uid: &str| {
        let mut cmd = p.cli.command(PYTHON);
        cmd.args(["-c", ONE_DATAGRAM_SERVER, uid, "9005"]).stdout(Stdio::piped());
        let mut child = p.cli.spawn(cmd).expect("start the server");
        let mut lines = BufReader::new(child.stdout().expect("stdout")).lines();
        let ready = lines.next().and_then(Result::ok);
        assert_eq!(ready.as_deref(), Some("ready"), "the server as {uid} did not start");
        (child, lines)
    };
    let send = || {
        let out = p
            .srv
            .command(PYTHON)
            .args(["-c", ONE_DATAGRAM_CLIENT, &addr::CLI_V4.to_string(), "9005", "41005"])
            .output()
            .unwrap_or_else(|e| panic!("the client: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (_a, mut a) = serve("1001");
    assert_eq!(send(), "echoed", "the allowed server answers");
    assert_eq!(a.next().and_then(Result::ok).as_deref(), Some("got"));
    // The allowed server's socket is closed; the host hears of it.
    std::thread::sleep(Duration::from_millis(500));
    let (_b, mut b) = serve("1002");
    let second = send();
    let heard = b.next().and_then(Result::ok);
    assert_eq!(f.stop(), Some(0));
    assert_ne!(second, "echoed", "the refused server answered the same peer");
    assert_eq!(heard.as_deref(), Some("none"), "the refused server was reached");
    let refused = f.seen.iter().any(|e| {
        e["event"] == "flow"
            && e["flow"]["direction"] == "inbound"
            && e["flow"]["process"]["uid"] == 1002
            && e["decision"] == "drop"
    });
    assert!(refused, "the second server's flow was not asked about: {:#?}", f.seen);
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// Connects to each port in argv[2:] on argv[1], sends 16 bytes and closes; prints {port:
/// "sent" or the errno}.
const CONNECT_EACH: &str = r#"
import errno, json, socket, sys
out = {}
for port in sys.argv[2:]:
    try:
        s = socket.create_connection((sys.argv[1], int(port)), timeout=5)
        s.sendall(b"hello, flow_log\n")
        s.close()
        out[port] = "sent"
    except OSError as e:
        out[port] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out))
"#;

/// The SDK's front-door example, `crates/filter/examples/flow_log.rs`, run as its doc says:
/// a flow to a port in `block_ports` is refused at once, another goes through, and the one it
/// let through is logged again when it closes, with what it carried.
#[test]
fn netns_filter_the_flow_log_example_refuses_and_logs_what_closed_flows_carried() {
    let example = crate::support::example("nw-filter", "flow_log");
    let p = pair();
    let _sink = sink(&p.srv);
    let dir = crate::support::Dir::new("filter-flow-log");
    let log_path = dir.0.join("provider.log");
    let log = std::fs::File::create(&log_path).expect("the provider's log");
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up", "--json", "--provider"])
        .arg(&example)
        .args(["--options", r#"{"block_ports": [7002]}"#]);
    let mut f = Events::spawn_to(&p.cli, cmd, Stdio::from(log));
    f.event("ready");
    f.event("provider_started");
    let out = python_json(
        &p.cli,
        "connect-each",
        CONNECT_EACH,
        &[&addr::SRV_V4.to_string(), "7001", "7002"],
    );
    assert_eq!(out, json!({"7001": "sent", "7002": "ECONNREFUSED"}), "{:#?}", f.seen);
    let closed = f.wait(Duration::from_secs(10), |v| v["event"] == "closed");
    // 16 bytes, and the SYN and the FIN, which tcp_info counts one each.
    assert_eq!(closed["report"]["bytes_out"], 18, "{closed}");
    assert_eq!(f.stop(), Some(0));
    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    let srv = addr::SRV_V4;
    assert!(logged.contains("flow_log: refusing flows to ports [7002]"), "{logged}");
    assert!(logged.contains(&format!("-> {srv}:7002 TCP: refused")), "{logged}");
    let closed_line = logged.lines().find(|l| l.contains(&format!("-> {srv}:7001 TCP: closed")));
    assert!(
        closed_line.is_some_and(|l| l.contains("; out 18 bytes (") && l.starts_with("flow_log: #")),
        "{logged}"
    );
    assert!(logged.contains("flow_log: stopped"), "{logged}");
}

/// A host whose output pipe closed (`nw filter up | head -1`) stops in order on SIGTERM and
/// says so with its exit status: its closing line used to panic ("failed printing to stdout:
/// Broken pipe"), exit 101.
#[test]
fn netns_filter_a_host_whose_output_pipe_closed_still_stops_in_order() {
    let p = pair();
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up"]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut host = p.cli.spawn(cmd).expect("start nw filter up");
    let mut out = BufReader::new(host.stdout().expect("stdout piped"));
    let mut first = String::new();
    out.read_line(&mut first).expect("a first line");
    assert!(first.contains("filtering new flows"), "{first}");
    drop(out);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(host.id() as libc::pid_t, libc::SIGTERM) };
    let status = host.wait_for(Duration::from_secs(20)).expect("nw filter up stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "an orderly stop, not a panic");
    assert_eq!(our_rules_left(&p.cli), "", "rules left behind");
}

/// Rules from a named pipe nothing writes to are refused (exit 2, nothing installed), not run
/// as no rules at all — which lets every flow through. (In a lab namespace, and given ten
/// seconds, so that a host started by mistake filters nothing of this machine's and ends.)
#[test]
fn netns_filter_rules_from_a_pipe_nothing_writes_to_are_refused() {
    let p = pair();
    let scratch = nw_lab::Scratch::new("rules-fifo").expect("a scratch directory");
    let fifo = scratch.path().join("rules.fifo");
    crate::support::mkfifo(&fifo);
    let mut cmd = p.cli.command(NW);
    cmd.args(["filter", "up", "--rules"]).arg(&fifo).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut host = p.cli.spawn(cmd).expect("start nw filter up");
    let mut stderr = host.stderr().expect("stderr piped");
    // (A host still running after ten seconds is killed with the namespace's other processes.)
    let status = host.wait_for(Duration::from_secs(10));
    let status = status.unwrap_or_else(|e| panic!("nw filter up ran with no rules: {e}"));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).expect("its stderr");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("nothing could be read from it (a pipe nothing writes to?)"), "{err}");
    assert_eq!(our_rules_left(&p.cli), "", "rules installed");
}
