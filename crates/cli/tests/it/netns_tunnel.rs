//! `nw tunnel up` for real: a TUN device, addresses, routes and rules in a lab namespace, with
//! a provider written in Python (the contract is language-neutral) that answers pings carried
//! by the tunnel. What the host says it applied is checked against iproute2's own reading.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nw_lab::{Child, Lab, Namespace, Pair};
use serde_json::{Value, json};

use crate::support::{Events, NW};

const ECHO_PROVIDER: &str = include_str!("providers/echo.py");
const PYTHON: &str = "/usr/bin/python3";

fn pair() -> Pair {
    Lab::new().and_then(|lab| lab.pair()).unwrap_or_else(|e| panic!("lab setup failed: {e}"))
}

/// `nw tunnel up --json` in `ns`, its event lines read as they come.
struct Tunnel;

impl Tunnel {
    fn up(ns: &Namespace, extra: &[&str], provider: &[&str]) -> Events {
        let mut cmd = ns.command(NW);
        cmd.args(["tunnel", "up", "--json"]).args(extra).arg("--").args(provider);
        Events::spawn(ns, cmd)
    }

    fn echo(ns: &Namespace, options: &Value, extra: &[&str]) -> Events {
        let options = options.to_string();
        let mut args = vec!["--options", options.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--provider", PYTHON]);
        Self::up(ns, &args, &["-c", ECHO_PROVIDER])
    }
}

fn ip_json(ns: &Namespace, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["-j"];
    argv.extend_from_slice(args);
    let out = ns.ip(argv).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    if out.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?} not JSON ({e}): {out}"))
}

/// The tunnel table's routes as iproute2 prints them: "10.99.0.0/16 dev nwtun0" or
/// "throw 10.99.5.0/24".
fn table_routes(ns: &Namespace, table: u64) -> BTreeSet<String> {
    let table = table.to_string();
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        for r in ip_json(ns, &[family, "route", "show", "table", &table]) {
            let dst = r["dst"].as_str().unwrap_or_default().to_owned();
            let dst = if dst.contains('/') {
                dst
            } else if dst.contains(':') {
                format!("{dst}/128")
            } else {
                format!("{dst}/32")
            };
            out.insert(match r["type"].as_str() {
                Some("throw") => format!("throw {dst}"),
                _ => format!("{dst} dev {}", r["dev"].as_str().unwrap_or("?")),
            });
        }
    }
    out
}

/// Our rules (priorities 5270 and 5271), as "PRIORITY table-or-mark", both families.
fn our_rules(ns: &Namespace) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        for r in ip_json(ns, &[family, "rule", "show"]) {
            let prio = r["priority"].as_u64().unwrap_or_default();
            if prio == 5270 || prio == 5271 {
                out.push(format!("{family} {prio} {} {}", r["table"], r["fwmark"]));
            }
        }
    }
    out
}

fn route_dev(ns: &Namespace, dst: &str) -> String {
    let family = if dst.contains(':') { "-6" } else { "-4" };
    let r = ip_json(ns, &[family, "route", "get", dst]);
    r.first().and_then(|r| r["dev"].as_str()).unwrap_or("none").to_owned()
}

fn addresses(ns: &Namespace, dev: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for link in ip_json(ns, &["addr", "show", "dev", dev]) {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "global" {
                out.insert(format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]));
            }
        }
    }
    out
}

fn settings(excluded: &[&str]) -> Value {
    json!({
        "tunnel_remote_address": "198.51.100.2",
        "addresses": ["10.98.0.2/24", "fd98::2/64"],
        "included_routes": ["10.99.0.0/16", "172.31.0.0/16", "fd99::/64"],
        "excluded_routes": excluded,
        "mtu": 1380,
    })
}

fn assert_nothing_left(ns: &Namespace, table: u64) {
    assert!(
        ip_json(ns, &["link", "show"]).iter().all(|l| l["ifname"] != "nwtun0"),
        "the TUN device is left behind"
    );
    assert_eq!(our_rules(ns), Vec::<String>::new(), "rules are left behind");
    assert_eq!(table_routes(ns, table), BTreeSet::new(), "routes are left behind");
}

/// Settings fidelity (A37): v4+v6 addresses, 3 included and 2 excluded routes, MTU 1380, read
/// back by iproute2 with 0 differences; re-applied with one more excluded route while a ping
/// crosses the tunnel: no ping lost, the table matches the second settings; after SIGTERM,
/// nothing is left.
#[test]
fn netns_tunnel_applies_settings_exactly_reapplies_without_loss_and_leaves_nothing() {
    let p = pair();
    let first = settings(&["10.99.5.0/24", "10.99.6.0/24"]);
    let second = settings(&["10.99.5.0/24", "10.99.6.0/24", "10.99.7.0/24"]);
    let options = json!({"settings": first, "then": second, "after_ms": 1500});
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
    let created = t.event("created");
    let table = created["table"].as_u64().expect("table");
    t.wait(Duration::from_secs(15), |v| v["event"] == "applied" && v["id"] == 1);
    t.event("started");

    let link = ip_json(&p.cli, &["link", "show", "dev", "nwtun0"]);
    assert_eq!(link[0]["mtu"], 1380, "{link:?}");
    assert!(link[0]["flags"].as_array().is_some_and(|f| f.iter().any(|f| f == "UP")), "{link:?}");
    let want_addrs: BTreeSet<String> = ["10.98.0.2/24", "fd98::2/64"].map(String::from).into();
    assert_eq!(addresses(&p.cli, "nwtun0"), want_addrs);
    let mut want: BTreeSet<String> = [
        "10.99.0.0/16 dev nwtun0",
        "172.31.0.0/16 dev nwtun0",
        "fd99::/64 dev nwtun0",
        "throw 10.99.5.0/24",
        "throw 10.99.6.0/24",
        "throw 198.51.100.2/32",
    ]
    .map(String::from)
    .into();
    assert_eq!(table_routes(&p.cli, table), want, "the first settings");
    assert_eq!(our_rules(&p.cli).len(), 4, "{:?}", our_rules(&p.cli));

    // 60 pings over 3 s; the second settings land 1.5 s after the start.
    let ping = p.cli.run(["ping", "-n", "-c", "60", "-i", "0.05", "-W", "2", "10.99.1.1"]);
    let ping = ping.unwrap_or_else(|e| panic!("ping through the tunnel: {e}"));
    assert!(ping.contains("60 received"), "pings were lost across the re-application:\n{ping}");
    let applied = t.wait(Duration::from_secs(5), |v| v["event"] == "applied" && v["id"] == 2);
    want.insert("throw 10.99.7.0/24".into());
    assert_eq!(table_routes(&p.cli, table), want, "the second settings; event: {applied}");
    let six = p.cli.run(["ping", "-6", "-n", "-c", "5", "-i", "0.05", "-W", "2", "fd99::7"]);
    assert!(six.is_ok_and(|o| o.contains("5 received")), "IPv6 through the tunnel");

    assert_eq!(route_dev(&p.cli, "10.99.1.1"), "nwtun0");
    assert_eq!(route_dev(&p.cli, "172.31.9.9"), "nwtun0");
    assert_eq!(route_dev(&p.cli, "10.99.7.1"), "eth0", "an excluded route stays outside");
    assert_eq!(route_dev(&p.cli, "198.51.100.2"), "eth0", "the remote address stays outside");
    assert_eq!(route_dev(&p.cli, "192.0.2.1"), "eth0", "what is not included stays outside");

    assert_eq!(t.stop(), Some(0), "an orderly stop exits 0; events: {:#?}", t.seen);
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "user_initiated", "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");
    assert_nothing_left(&p.cli, table);
}

/// Apply latency: 100 re-applications alternating between two settings that differ by one
/// excluded route, each read back from the kernel with no difference; p50 and p95 printed.
#[test]
fn netns_tunnel_apply_latency_over_100_applications() {
    let p = pair();
    let first = settings(&["10.99.5.0/24", "10.99.6.0/24"]);
    let second = settings(&["10.99.5.0/24", "10.99.6.0/24", "10.99.7.0/24"]);
    let options = json!({"settings": first, "then": second, "repeat": 100});
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
    let last = t.wait(Duration::from_secs(60), |v| v["event"] == "applied" && v["id"] == 199);
    let table = t.event("created")["table"].as_u64().expect("table");
    let mut ms: Vec<f64> = t
        .seen
        .iter()
        .filter(|v| v["event"] == "applied" && v["id"].as_u64().is_some_and(|id| id >= 100))
        .filter_map(|v| v["ms"].as_f64())
        .collect();
    assert_eq!(ms.len(), 100, "events: {:#?}", t.seen);
    assert!(t.seen.iter().all(|v| v["event"] != "refused"), "{:#?}", t.seen);
    // The last applied is the first settings again (even ids apply "then").
    assert_eq!(last["kernel"]["routes"].as_array().map(Vec::len), Some(6), "{last}");
    ms.sort_by(f64::total_cmp);
    println!("apply latency over 100 applications: p50 {:.2} ms, p95 {:.2} ms", ms[49], ms[94]);
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
    assert_nothing_left(&p.cli, table);
}

/// A provider killed with SIGKILL (with restarts turned off) ends the tunnel as
/// `provider_failed`, and the teardown leaves nothing; one that breaks the contract, asks for a bad route, or never starts gets
/// the same clean stop with a reason that says so.
#[test]
fn netns_tunnel_providers_that_die_misbehave_or_hang_get_a_clean_stop() {
    let p = pair();
    let options = json!({"settings": settings(&["10.99.5.0/24"])});
    let mut t = Tunnel::echo(&p.cli, &options, &["--max-restarts", "0"]);
    let created = t.event("created");
    let table = created["table"].as_u64().expect("table");
    t.event("started");
    let pid = libc::pid_t::try_from(created["pid"].as_i64().expect("pid")).expect("a pid");
    // SAFETY: kill(2) on the provider, a grandchild of this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = t.child.wait_for(Duration::from_secs(15)).ok().and_then(|s| s.code());
    assert_eq!(status, Some(1), "events: {:#?}", t.seen);
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "provider_failed", "{stopped}");
    assert!(stopped["message"].as_str().is_some_and(|m| m.contains("exited")), "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");
    assert_nothing_left(&p.cli, table);

    // Garbage on the contract socket.
    let mut t = Tunnel::up(&p.cli, &["--provider", "/bin/sh"], &["-c", "echo hello >&3; sleep 30"]);
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "provider_failed", "{stopped}");
    let m = stopped["message"].as_str().unwrap_or_default();
    assert!(m.contains("broke the contract") && m.contains("hello"), "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");

    // A 1 GB message: refused once a line passes 1 MiB, without reading the rest.
    let began = Instant::now();
    let mut t = Tunnel::up(
        &p.cli,
        &["--provider", "/bin/sh"],
        &["-c", "head -c 1073741824 /dev/zero >&3; sleep 30"],
    );
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "provider_failed", "{stopped}");
    let m = stopped["message"].as_str().unwrap_or_default();
    assert!(m.contains("longer than 1048576 bytes"), "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");
    assert!(began.elapsed() < Duration::from_secs(10), "took {:?}", began.elapsed());

    // A route with host bits set: refused, nothing applied, the provider gives up.
    let bad =
        json!({"settings": {"addresses": ["10.98.0.2/24"], "included_routes": ["10.99.0.1/16"]}});
    let mut t = Tunnel::echo(&p.cli, &bad, &[]);
    let refused = t.event("refused");
    let m = refused["message"].as_str().unwrap_or_default();
    assert!(m.contains("did you mean 10.99.0.0/16"), "{refused}");
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "configuration_failed", "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");

    // A provider that never answers `start`, and ignores `stop`.
    let began = Instant::now();
    let mut t = Tunnel::up(&p.cli, &["--start-timeout", "1", "--provider", "/bin/sleep"], &["30"]);
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "idle_timeout", "{stopped}");
    assert_eq!(stopped["leftovers"], json!([]), "{stopped}");
    assert!(began.elapsed() < Duration::from_secs(10), "took {:?}", began.elapsed());
    assert_eq!(t.child.wait_for(Duration::from_secs(5)).ok().and_then(|s| s.code()), Some(1));
    assert_nothing_left(&p.cli, table);

    // Someone else's persistent TUN device is neither taken over nor deleted.
    p.cli.ip(["tuntap", "add", "mode", "tun", "name", "nwkeep0"]).expect("ip tuntap add");
    let out = p
        .cli
        .command(NW)
        .args(["tunnel", "up", "--interface", "nwkeep0", "--provider", "/bin/true"])
        .output()
        .expect("run nw tunnel up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"nwkeep0\" exists already"), "{stderr}");
    assert_eq!(
        ip_json(&p.cli, &["link", "show", "dev", "nwkeep0"]).len(),
        1,
        "the device was deleted"
    );

    // A provider that cannot be run at all is the command line's mistake too: exit 2, and
    // nothing left behind (the device it made is gone).
    let out = p
        .cli
        .command(NW)
        .args(["tunnel", "up", "--interface", "nwgone0", "--provider", "/nonexistent/provider"])
        .output()
        .expect("run nw tunnel up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot start the provider /nonexistent/provider"), "{stderr}");
    let links = ip_json(&p.cli, &["link", "show"]);
    assert!(!links.iter().any(|l| l["ifname"] == "nwgone0"), "the device stayed: {links:?}");
}

/// An update: the provider's program replaced on disk (a new file renamed over it, as a
/// package manager does). The running provider is told to stop with `app_update` and the new
/// one is started, the tunnel staying in place: pings cross it before and after, and the stop
/// at the end is the user's. A script an interpreter runs is the program so far as updates go.
#[test]
fn netns_tunnel_a_replaced_provider_program_is_stopped_with_app_update_and_started_anew() {
    let example = crate::support::example("nw-tunnel", "echo_provider");
    let dir = crate::support::Dir::new("tunnel-update");
    let program = dir.0.join("provider");
    std::fs::copy(&example, &program).expect("a copy of the provider");
    let log_path = dir.0.join("host.log");
    let log = std::fs::File::create(&log_path).expect("the host's log");
    let p = pair();
    let options = json!({"settings": settings(&["10.99.5.0/24"])}).to_string();
    let mut cmd = p.cli.command(NW);
    cmd.args(["tunnel", "up", "--json", "--options", &options, "--provider"]).arg(&program);
    let mut t = Events::spawn_to(&p.cli, cmd, std::process::Stdio::from(log));
    let first = t.event("created")["pid"].clone();
    t.event("started");
    let ping = |what: &str| {
        let out = p.cli.run(["ping", "-n", "-c", "5", "-i", "0.05", "-W", "2", "10.99.1.1"]);
        let out = out.unwrap_or_else(|e| panic!("ping through the tunnel {what}: {e}"));
        assert!(out.contains("5 received"), "{what}: {out}");
    };
    ping("before the update");

    let staged = dir.0.join("provider.new");
    std::fs::copy(&example, &staged).expect("the new program");
    std::fs::rename(&staged, &program).expect("the new program renamed over the old");
    let updated = t.wait(Duration::from_secs(10), |v| v["event"] == "updated");
    assert_eq!(updated["reason"], "app_update", "{updated}");
    assert!(updated["pid"].as_u64().is_some() && updated["pid"] != first, "{updated} {first}");
    t.nth(2, Duration::from_secs(10), |v| v["event"] == "started");
    ping("after the update");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
    assert_eq!(t.event("stopped")["reason"], "user_initiated");
    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(logged.contains("echo_provider: stopping (app_update)"), "{logged}");
    assert!(logged.contains("echo_provider: stopping (user_initiated)"), "{logged}");

    // A provider in a script run by an interpreter: the update replaces the script (named
    // relative to the host's directory), not the interpreter, and is seen all the same.
    let script = dir.0.join("provider.py");
    std::fs::write(&script, ECHO_PROVIDER).expect("the script");
    let mut cmd = p.cli.command(NW);
    cmd.current_dir(&dir.0)
        .args(["tunnel", "up", "--json", "--options", &options, "--provider", PYTHON])
        .args(["--", "provider.py"]);
    let mut t = Events::spawn(&p.cli, cmd);
    let first = t.event("created")["pid"].clone();
    t.event("started");
    ping("with the script's first version");
    let staged = dir.0.join("provider.py.new");
    std::fs::write(&staged, format!("{ECHO_PROVIDER}\n# version 2\n")).expect("version 2");
    std::fs::rename(&staged, &script).expect("version 2 renamed over the script");
    let updated = t.wait(Duration::from_secs(10), |v| v["event"] == "updated");
    assert!(updated["pid"] != first, "{updated} {first}");
    t.nth(2, Duration::from_secs(10), |v| v["event"] == "started");
    ping("with the script's second version");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
}

/// The Rust SDK for real: `crates/tunnel/examples/echo_provider.rs`, a provider of a few dozen
/// lines, applies its settings and answers pings through the tunnel, and stops in order.
#[test]
fn netns_tunnel_a_provider_on_the_rust_sdk_carries_pings_and_stops_in_order() {
    let example = crate::support::example("nw-tunnel", "echo_provider");
    let p = pair();
    let options = json!({"settings": settings(&["10.99.5.0/24"])}).to_string();
    let mut t = Tunnel::up(
        &p.cli,
        &["--options", &options, "--provider", &example.display().to_string()],
        &[],
    );
    let table = t.event("created")["table"].as_u64().expect("table");
    t.event("started");
    let ping = p.cli.run(["ping", "-n", "-c", "10", "-i", "0.05", "-W", "2", "10.99.1.1"]);
    let ping = ping.unwrap_or_else(|e| panic!("ping through the tunnel: {e}"));
    assert!(ping.contains("10 received"), "{ping}");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
    let stopped = t.event("stopped");
    assert_eq!(stopped["reason"], "user_initiated", "{stopped}");
    assert!(
        stopped["provider_exit"].as_str().is_some_and(|e| e.contains("exit status: 0")),
        "{stopped}"
    );
    assert_nothing_left(&p.cli, table);
}

/// Sends UDP datagrams at `rate` a second for `seconds`, round robin to `targets` (a JSON list
/// of [address, port]); send errors (a kill switch's reject) are counted, not fatal. First one
/// TCP connect to `tcp` ([address, port]) that a kill switch must refuse at once. Prints one
/// JSON line: sent and refused per target, and how the connect ended and how long it took.
const PROBER: &str = r#"
import json, socket, sys, time
targets, rate, seconds, tcp = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
began = time.monotonic()
s = socket.socket(socket.AF_INET6 if ":" in tcp[0] else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect((tcp[0], tcp[1]))
    connect = "connected"
except OSError as e:
    connect = type(e).__name__
connect_ms = (time.monotonic() - began) * 1000
socks = {4: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 6: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)}
sent = [0] * len(targets)
refused = [0] * len(targets)
start = time.monotonic()
i = 0
while True:
    due = start + i / rate
    now = time.monotonic()
    if now - start >= seconds:
        break
    if due > now:
        time.sleep(due - now)
    k = i % len(targets)
    host, port = targets[k]
    try:
        socks[6 if ":" in host else 4].sendto(b"probe %d" % i, (host, port))
        sent[k] += 1
    except OSError:
        refused[k] += 1
    i += 1
print(json.dumps({"sent": sent, "refused": refused, "connect": connect, "connect_ms": connect_ms}))
"#;

/// Counts what arrives on the server's end of the veth: packets to the tunnel's remote address,
/// and every other IPv4 or IPv6 packet but neighbour discovery (a leak once a kill switch is on).
const COUNTERS: &str = r#"
table netdev probe {
    counter endpoint { }
    counter leak { }
    chain ingress {
        type filter hook ingress device "eth0" priority 0; policy accept;
        ip daddr 198.51.100.2 counter name "endpoint" accept
        icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
        meta protocol { ip, ip6 } counter name "leak" accept
    }
}
"#;

/// The server's counters: (to the endpoint, anything else).
fn counted(ns: &Namespace) -> (u64, u64) {
    let out = ns
        .run(["nft", "-j", "list", "counters", "table", "netdev", "probe"])
        .unwrap_or_else(|e| panic!("nft list counters: {e}"));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let get = |name: &str| {
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["counter"]["name"] == name)
            .and_then(|c| c["counter"]["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {out}"))
    };
    (get("endpoint"), get("leak"))
}

fn probe(ns: &Namespace, targets: &Value, rate: u32, seconds: f64, tcp: &Value) -> Child {
    let mut cmd = ns.command(PYTHON);
    cmd.args(["-c", PROBER, &targets.to_string(), &rate.to_string(), &seconds.to_string()])
        .arg(tcp.to_string())
        .stdout(std::process::Stdio::piped());
    ns.spawn(cmd).unwrap_or_else(|e| panic!("start the prober: {e}"))
}

fn probed(mut child: Child) -> Value {
    child.wait_for(Duration::from_secs(60)).unwrap_or_else(|e| panic!("the prober: {e}"));
    let mut out = String::new();
    let stdout = child.stdout().expect("stdout piped");
    std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("prober output ({e}): {out}"))
}

/// The kill switch: a tunnel that carries IPv4 only (the classic leak is IPv6), with an
/// excluded range, while a prober sends 1,000 datagrams a second for 10 s. The provider is
/// killed with SIGKILL (it is restarted; the restart time is printed), then the host itself:
/// not one packet leaves the veth to anything but the tunnel's remote address, IPv6 and DNS
/// included, and a TCP connect outside the tunnel is refused at once instead of hanging.
/// `nw tunnel status` names the kill switch the killed host left; `nw tunnel down` removes it
/// and traffic flows again.
#[test]
fn netns_tunnel_kill_switch_leaks_nothing_when_the_provider_or_the_host_is_killed() {
    let p = pair();
    p.srv.nft(COUNTERS).unwrap_or_else(|e| panic!("the server's counters: {e}"));
    // Outside the tunnel: IPv4 in an excluded range, IPv6 on-link and routed, DNS on both.
    let outside = json!([["192.0.2.200", 53], ["2001:db8:1::2", 53], ["2001:db8:99::53", 53]]);
    let targets = json!([
        ["192.0.2.200", 53],
        ["2001:db8:1::2", 53],
        ["2001:db8:99::53", 53],
        ["192.0.2.53", 53],
        ["198.51.100.2", 9]
    ]);
    let tcp = json!(["2001:db8:1::2", 80]);

    // Without a tunnel, the counter counts: the probes arrive.
    let before = counted(&p.srv);
    let seen = probed(probe(&p.cli, &outside, 200, 0.1, &tcp));
    let after = counted(&p.srv);
    assert!(
        after.1 - before.1 >= 15,
        "the leak counter counts nothing: {before:?} {after:?} {seen}"
    );

    let options = json!({"settings": {
        "tunnel_remote_address": "198.51.100.2",
        "addresses": ["10.98.0.2/24"],
        "included_routes": ["0.0.0.0/0"],
        "excluded_routes": ["192.0.2.128/25"],
        "mtu": 1380,
    }});
    let mut t = Tunnel::echo(&p.cli, &options, &["--kill-switch"]);
    let created = t.event("created");
    let table = created["table"].as_u64().expect("table");
    t.event("started");
    let ping = p.cli.run(["ping", "-n", "-c", "3", "-i", "0.05", "-W", "2", "192.0.2.53"]);
    assert!(ping.is_ok_and(|o| o.contains("3 received")), "IPv4 goes through the tunnel");

    let before = counted(&p.srv);
    let prober = probe(&p.cli, &targets, 1000, 10.0, &tcp);
    std::thread::sleep(Duration::from_secs(2));
    let pid = libc::pid_t::try_from(created["pid"].as_i64().expect("pid")).expect("a pid");
    let killed = Instant::now();
    // SAFETY: kill(2) on the provider, a grandchild of this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    t.event("restarting");
    t.nth(2, Duration::from_secs(10), |v| v["event"] == "started");
    let restart = killed.elapsed();
    println!("provider killed -> restarted and started again in {restart:?}");
    std::thread::sleep(Duration::from_secs(2));
    let ping = p.cli.run(["ping", "-n", "-c", "3", "-i", "0.05", "-W", "2", "192.0.2.53"]);
    assert!(ping.is_ok_and(|o| o.contains("3 received")), "the restarted provider carries it");
    std::thread::sleep(Duration::from_secs(1));
    // Now the host itself, which cannot clean up.
    let host = libc::pid_t::try_from(t.child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(host, libc::SIGKILL) };
    let _ = t.child.wait_for(Duration::from_secs(5));
    let seen = probed(prober);
    let after = counted(&p.srv);
    let sent: u64 = seen["sent"].as_array().into_iter().flatten().filter_map(Value::as_u64).sum();
    let refused: u64 =
        seen["refused"].as_array().into_iter().flatten().filter_map(Value::as_u64).sum();
    println!(
        "kill switch: {} datagrams sent, {refused} refused at once; {} to the endpoint, {} leaked",
        sent,
        after.0 - before.0,
        after.1 - before.1
    );
    assert_eq!(after.1 - before.1, 0, "packets left to something but the endpoint: {seen}");
    assert!(after.0 > before.0, "the tunnel's remote address stays reachable: {seen}");
    assert!(sent + refused >= 8_000, "the prober fell behind: {seen}");
    assert_eq!(seen["connect"], "ConnectionRefusedError", "{seen}");
    assert!(seen["connect_ms"].as_f64().is_some_and(|ms| ms < 1000.0), "{seen}");

    // What the killed host left: the kill switch holds.
    let status = p.cli.command(NW).args(["tunnel", "status", "--json"]).output().expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["tunnels"], json!([]), "{status}");
    let left = status["leftovers"].to_string();
    assert!(left.contains("the kill switch of nwtun0"), "{status}");
    let doctor = p.cli.command(NW).args(["doctor", "--json"]).output().expect("nw doctor");
    let doctor: Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    let section = doctor["sections"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "tunnel"))
        .cloned()
        .unwrap_or_else(|| panic!("no tunnel section: {doctor}"));
    assert_eq!(section["status"], "warn", "{section}");
    assert!(section["details"]["leftovers"].to_string().contains("kill switch"), "{section}");
    let still = probed(probe(&p.cli, &outside, 200, 0.1, &tcp));
    assert_eq!(counted(&p.srv).1, after.1, "the kill switch held after its host died: {still}");

    let down = p.cli.command(NW).args(["tunnel", "down"]).output().expect("nw tunnel down");
    let text = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&down.stderr));
    assert!(text.contains("removed the kill switch of nwtun0"), "{text}");
    assert_nothing_left(&p.cli, table);
    let out = p.cli.run(["nft", "list", "tables"]).unwrap_or_default();
    assert!(!out.contains("nwkit_tunnel"), "{out}");
    let before = counted(&p.srv);
    let seen = probed(probe(&p.cli, &outside, 200, 0.1, &tcp));
    assert!(counted(&p.srv).1 - before.1 >= 15, "traffic flows again after down: {seen}");
}

/// Records the destinations of UDP datagrams to port 9 that arrive on `eth0` (AF_PACKET, so
/// also those addressed elsewhere), for argv[1] seconds; touches argv[2] once it listens and
/// writes the sorted list as JSON to argv[3].
const SNIFFER: &str = r#"
import json, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
# Room for a whole burst: the default buffer holds a few hundred frames.
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
s.bind(("eth0", 0))
s.settimeout(0.1)
open(sys.argv[2], "w").close()
seen = set()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    kind, p = struct.unpack("!H", frame[12:14])[0], frame[14:]
    if kind == 0x0800 and len(p) >= 28 and p[9] == 17:
        ihl = (p[0] & 15) * 4
        port, dst = struct.unpack("!H", p[ihl + 2:ihl + 4])[0], socket.inet_ntop(socket.AF_INET, p[16:20])
    elif kind == 0x86DD and len(p) >= 48 and p[6] == 17:
        port, dst = struct.unpack("!H", p[42:44])[0], socket.inet_ntop(socket.AF_INET6, p[24:40])
    else:
        continue
    if port == 9:
        seen.add(dst)
with open(sys.argv[3], "w") as f:
    json.dump(sorted(seen), f)
"#;

/// Sends one UDP datagram to port 9 of each address in argv[1] (JSON), 0.2 ms apart, then
/// "report" to argv[2].
const SPRAY: &str = r#"
import json, socket, sys, time
v4, v6 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for a in json.loads(sys.argv[1]):
    (v6 if ":" in a else v4).sendto(b"probe", (a, 9))
    time.sleep(0.0002)
(v6 if ":" in sys.argv[2] else v4).sendto(b"report", (sys.argv[2], 9))
"#;

/// Routing: 1,000 destinations across the included ranges (v4 and v6), the excluded ones and
/// others, one datagram each, plus the tunnel's remote address. What the provider reads from
/// the TUN and what the server captures on the veth: every included destination on the TUN and
/// none on the veth, every other one on the veth and none on the TUN (0 misrouted), and the
/// remote address never on the TUN.
#[test]
fn netns_tunnel_routes_1000_destinations_with_none_misrouted() {
    let p = pair();
    let options = json!({"settings": settings(&["10.99.5.0/24", "10.99.6.0/24"])});
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
    t.event("started");
    let (mut inside, mut outside) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..1000u32 {
        let (hi, lo) = (i / 250, i % 250 + 1);
        let (k, j) = (i / 5, i / 5 % 250 + 1);
        match i % 5 {
            0 => inside.insert(format!("10.99.{}.{lo}", 10 + hi)),
            1 => inside.insert(format!("172.31.{hi}.{lo}")),
            2 => inside.insert(format!("fd99::{i:x}")),
            3 => outside.insert(format!("10.99.{}.{j}", 5 + i % 2)),
            _ => outside.insert(match k % 3 {
                0 => format!("192.0.2.{j}"),
                1 => format!("203.0.113.{j}"),
                _ => format!("2001:db8:99::{i:x}"),
            }),
        };
    }
    assert_eq!(inside.len() + outside.len(), 1000, "the destinations are distinct");
    outside.insert("198.51.100.2".into());

    let dir = crate::support::Dir::new("tunnel-routing");
    let (ready, found) = (dir.path("ready"), dir.path("veth.json"));
    let mut cmd = p.srv.command(PYTHON);
    cmd.args(["-c", SNIFFER, "8", &ready, &found]);
    let mut sniffer = p.srv.spawn(cmd).unwrap_or_else(|e| panic!("start the sniffer: {e}"));
    let began = Instant::now();
    while !std::path::Path::new(&ready).exists() {
        assert!(began.elapsed() < Duration::from_secs(5), "the sniffer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The gateway's neighbour entries first, so no datagram waits in (or falls out of) the
    // queue of an unresolved neighbour.
    for gw in ["198.51.100.2", "2001:db8:1::2"] {
        let _ = p.cli.run(["ping", "-n", "-c", "1", "-W", "2", gw]);
    }
    let all: Vec<&String> = inside.iter().chain(&outside).collect();
    let sent = p.cli.run([PYTHON, "-c", SPRAY, &json!(all).to_string(), "10.99.200.200"]);
    sent.unwrap_or_else(|e| panic!("the sprayer: {e}"));
    let report = t.wait(Duration::from_secs(10), |v| v["event"] == "app_message");
    let on_tun: BTreeSet<String> = report["data"]["discarded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    sniffer.wait_for(Duration::from_secs(15)).unwrap_or_else(|e| panic!("the sniffer: {e}"));
    let text = std::fs::read_to_string(&found).unwrap_or_else(|e| panic!("{found}: {e}"));
    let on_veth: BTreeSet<String> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));

    let tun_wrong: Vec<&String> = on_tun.symmetric_difference(&inside).collect();
    let veth_missing: Vec<&String> = outside.difference(&on_veth).collect();
    let veth_leaked: Vec<&String> = on_veth.intersection(&inside).collect();
    println!(
        "routing: {} destinations; {} read from the TUN, {} captured on the veth; misrouted: {} on the TUN, {} missing from the veth, {} included ones on the veth",
        all.len(),
        on_tun.len(),
        on_veth.len(),
        tun_wrong.len(),
        veth_missing.len(),
        veth_leaked.len()
    );
    assert!(tun_wrong.is_empty(), "the TUN carried the wrong set: {tun_wrong:?}");
    assert!(veth_missing.is_empty(), "not on the veth: {veth_missing:?}");
    assert!(veth_leaked.is_empty(), "included destinations left by the veth: {veth_leaked:?}");
    assert!(!on_tun.contains("198.51.100.2"), "the remote address entered the tunnel");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
}

/// Resolves each name in argv[1] (JSON) through the C library (so through resolv.conf) and
/// prints {name: address or the error}.
const RESOLVE: &str = r#"
import json, socket, sys
out = {}
for name in json.loads(sys.argv[1]):
    try:
        out[name] = socket.gethostbyname(name)
    except OSError as e:
        out[name] = "error: %s" % e
print(json.dumps(out))
"#;

/// Resolves `count` names through the C library in `ns`, half under the match domain
/// `corp.example` (the tunnel's resolver answers 10.53.0.1) and half under `.test` (the outside
/// one answers 192.0.2.77), and a single-label name for the search domain; asserts that each
/// got the right answer and that the outside resolver was never asked for the match domain.
/// Returns how many queries the outside resolver saw.
#[allow(clippy::print_stdout, reason = "the figures a test run shows")]
fn split_names_answered_right(
    ns: &Namespace,
    outside: &nw_lab::dns::DnsServer,
    count: usize,
    what: &str,
) -> usize {
    let names: Vec<String> = (0..count)
        .map(|i| if i % 2 == 0 { format!("n{i}.corp.example") } else { format!("n{i}.test") })
        .chain(["shorthost".to_owned()])
        .collect();
    let out = ns.run([PYTHON, "-c", RESOLVE, &json!(names).to_string()]);
    let got: Value = serde_json::from_str(&out.unwrap_or_else(|e| panic!("resolving: {e}")))
        .expect("resolver output");
    let wrong: Vec<(&String, &Value)> = names
        .iter()
        .map(|n| (n, &got[n]))
        .filter(|(n, a)| {
            let want = if n.ends_with(".test") { "192.0.2.77" } else { "10.53.0.1" };
            *a != want
        })
        .collect();
    let seen = outside.seen();
    let leaked = seen.iter().filter(|q| q.name.contains("corp.example")).count();
    println!(
        "{what}: {} names, {} answered by the wrong resolver or not at all; the outside resolver saw {} queries, {leaked} of them for the match domain",
        names.len(),
        wrong.len(),
        seen.len()
    );
    assert!(wrong.is_empty(), "{} wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(10)]);
    assert_eq!(leaked, 0, "matched names reached the outside resolver");
    seen.len()
}

/// Split DNS through our forwarder (systemd-resolved does not run here): 500 names, half under
/// the match domain, resolved through the C library — every one answered by the right resolver
/// (the one across the tunnel answers 10.53.0.1, the server namespace's 192.0.2.77), and not
/// one matched query reaches the outside resolver; the tunnel's search domain comes first. An
/// orderly stop puts resolv.conf back byte for byte; after a killed host, `nw tunnel down` does.
#[test]
fn netns_tunnel_split_dns_answers_each_name_from_the_right_resolver() {
    use nw_lab::dns::{DnsServer, Script};
    let p = pair();
    let outside = DnsServer::start(
        &p.srv,
        "198.51.100.2:53".parse().expect("an address"),
        Script::wildcard(&["192.0.2.77".parse().expect("an address")], &[]),
    )
    .unwrap_or_else(|e| panic!("the outside resolver: {e}"));
    let original = "nameserver 198.51.100.2\nsearch lab.test\n";
    p.cli.set_resolv_conf(original).unwrap_or_else(|e| panic!("{e}"));
    let mut options = json!({"settings": settings(&["10.99.5.0/24"])});
    options["settings"]["dns"] = json!({
        "servers": ["10.99.53.53"],
        "match_domains": ["corp.example"],
        "search_domains": ["corp.example"],
    });
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
    let applied = t.event("applied");
    assert_eq!(applied["kernel"]["name_servers"], json!(["127.0.78.53:53"]), "{applied}");
    t.event("started");
    let resolv = p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default();
    assert!(resolv.contains("nameserver 127.0.78.53\n"), "{resolv}");
    let status = p.cli.run([NW, "tunnel", "status"]).unwrap_or_else(|e| panic!("status: {e}"));
    assert!(
        status.contains(
            "DNS: 10.99.53.53 through our forwarder, which resolv.conf names (127.0.78.53:53)"
        ),
        "{status}"
    );
    assert!(resolv.contains("search corp.example lab.test\n"), "{resolv}");

    let seen = split_names_answered_right(&p.cli, &outside, 500, "split DNS");
    assert!(seen >= 250, "the outside resolver answered the rest: {seen}");

    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
    let back = p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default();
    assert_eq!(back, original, "resolv.conf was not put back");

    // A killed host leaves resolv.conf pointing at a forwarder that is gone; down repairs it.
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
    t.event("started");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(libc::pid_t::try_from(t.child.id()).expect("a pid"), libc::SIGKILL) };
    let _ = t.child.wait_for(Duration::from_secs(5));
    let left = p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default();
    assert!(left.contains("127.0.78.53"), "{left}");
    let status = p.cli.command(NW).args(["tunnel", "status", "--json"]).output().expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("resolv.conf pointing at the DNS forwarder"), "{status}");
    let down = p.cli.command(NW).args(["tunnel", "down"]).output().expect("nw tunnel down");
    assert_eq!(down.status.code(), Some(0), "{}", String::from_utf8_lossy(&down.stdout));
    let back = p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default();
    assert_eq!(back, original, "nw tunnel down did not put resolv.conf back");
}

/// Split DNS where systemd-resolved is the resolver (the real one, from Debian's package, on a
/// bus of the test's own): the tunnel's server and domains become the TUN device's per-link
/// DNS, resolv.conf is not touched, and 201 names resolved through the C library (so through
/// resolved's stub) are each answered by the right resolver — not one matched query reaches the
/// uplink's resolver. A full-DNS tunnel sends every name to the tunnel. New settings without
/// DNS take the link's DNS back; a killed host's device takes its settings with it, and the
/// names go to the uplink again.
#[test]
fn netns_tunnel_split_dns_through_systemd_resolved() {
    use nw_lab::dns::{DnsServer, Script};
    let p = pair();
    let outside = DnsServer::start(
        &p.srv,
        "198.51.100.2:53".parse().expect("an address"),
        Script::wildcard(&["192.0.2.77".parse().expect("an address")], &[]),
    )
    .unwrap_or_else(|e| panic!("the uplink's resolver: {e}"));
    let resolved = nw_lab::resolved::Resolved::start(&p.cli)
        .unwrap_or_else(|e| panic!("systemd-resolved in the lab: {e}"));
    resolved
        .set_uplink(&p.cli, &p.cli_dev, "198.51.100.2".parse().expect("an address"))
        .unwrap_or_else(|e| panic!("the uplink's DNS in resolved: {e}"));
    let stub = p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default();

    let mut options = json!({"settings": settings(&["10.99.5.0/24"])});
    options["settings"]["dns"] = json!({
        "servers": ["10.99.53.53"],
        "match_domains": ["corp.example"],
        "search_domains": ["corp.example"],
    });
    let up = |options: &Value| {
        let mut cmd = p.cli.command(NW);
        cmd.args([
            "tunnel",
            "up",
            "--json",
            "--options",
            &options.to_string(),
            "--provider",
            PYTHON,
        ])
        .args(["--", "-c", ECHO_PROVIDER])
        .env("DBUS_SYSTEM_BUS_ADDRESS", resolved.bus_address());
        Events::spawn(&p.cli, cmd)
    };
    let resolve = |names: &[String]| -> Value {
        let out = p.cli.run([PYTHON, "-c", RESOLVE, &json!(names).to_string()]);
        serde_json::from_str(&out.unwrap_or_else(|e| panic!("resolving: {e}")))
            .expect("resolver output")
    };

    let mut t = up(&options);
    let applied = t.event("applied");
    assert_eq!(
        applied["kernel"]["resolved"],
        json!({"servers": ["10.99.53.53"], "domains": ["corp.example"], "default_route": false}),
        "{applied}"
    );
    t.event("started");
    let (servers, domains) =
        resolved.link(&p.cli, "nwtun0").unwrap_or_else(|e| panic!("resolved's link: {e}"));
    assert_eq!(servers, "a(iay) 1 2 4 10 99 53 53");
    assert_eq!(domains, "a(sb) 1 \"corp.example\" false");
    let status = p.cli.run([NW, "tunnel", "status"]).unwrap_or_else(|e| panic!("status: {e}"));
    assert!(
        status.contains("DNS: 10.99.53.53 by systemd-resolved for the link (domains corp.example)"),
        "{status}"
    );
    assert_eq!(p.cli.run(["cat", "/etc/resolv.conf"]).unwrap_or_default(), stub);
    // Where resolved is in charge, /etc/resolv.conf links to the stub resolv.conf it writes,
    // which now searches the tunnel's domain too.
    let written = resolved.stub_resolv_conf().unwrap_or_else(|e| panic!("{e}"));
    assert!(written.contains("search corp.example"), "{written}");
    p.cli.set_resolv_conf(&written).unwrap_or_else(|e| panic!("{e}"));

    split_names_answered_right(&p.cli, &outside, 200, "split DNS through systemd-resolved");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);

    // A full-DNS tunnel (no match domains): every name goes to the tunnel's server and none
    // to the uplink's — resolved's `~.` routing domain, the link its default route.
    let mut full = json!({"settings": settings(&["10.99.5.0/24"])});
    full["settings"]["dns"] = json!({"servers": ["10.99.53.53"]});
    let mut t = up(&full);
    let applied = t.event("applied");
    assert_eq!(
        applied["kernel"]["resolved"],
        json!({"servers": ["10.99.53.53"], "domains": ["~."], "default_route": true}),
        "{applied}"
    );
    t.event("started");
    let before = outside.seen().len();
    let got = resolve(&["f1.test".to_owned(), "f2.corp.example".to_owned()]);
    assert_eq!(
        (&got["f1.test"], &got["f2.corp.example"]),
        (&json!("10.53.0.1"), &json!("10.53.0.1")),
        "{got}"
    );
    assert_eq!(outside.seen().len(), before, "a full-DNS tunnel's names reached the uplink");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);

    // New settings without DNS: the link's DNS is taken back.
    let mut changing = options.clone();
    changing["after_ms"] = json!(500);
    changing["then"] = settings(&["10.99.5.0/24"]);
    let mut t = up(&changing);
    t.event("started");
    t.wait(Duration::from_secs(10), |v| v["event"] == "applied" && v["id"] == 2);
    let (servers, domains) =
        resolved.link(&p.cli, "nwtun0").unwrap_or_else(|e| panic!("resolved's link: {e}"));
    assert_eq!((servers.as_str(), domains.as_str()), ("a(iay) 0", "a(sb) 0"));
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);

    // An IPv6 server beside the IPv4 one: both reach resolved, in order, each as its family
    // and 16 or 4 bytes (AF_INET6 is 10), and the applied line reads both back.
    let mut both = options.clone();
    both["settings"]["dns"]["servers"] = json!(["10.99.53.53", "fd99::53"]);
    let mut t = up(&both);
    let applied = t.event("applied");
    assert_eq!(
        applied["kernel"]["resolved"]["servers"],
        json!(["10.99.53.53", "fd99::53"]),
        "{applied}"
    );
    t.event("started");
    let (servers, _) =
        resolved.link(&p.cli, "nwtun0").unwrap_or_else(|e| panic!("resolved's link: {e}"));
    assert_eq!(
        servers, "a(iay) 2 2 4 10 99 53 53 10 16 253 153 0 0 0 0 0 0 0 0 0 0 0 0 0 83",
        "resolved's DNS for the link"
    );
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);

    // A killed host: its device goes, and resolved forgets what the link had.
    let mut t = up(&options);
    t.event("started");
    assert_eq!(resolve(&["k1.corp.example".to_owned()])["k1.corp.example"], "10.53.0.1");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(libc::pid_t::try_from(t.child.id()).expect("a pid"), libc::SIGKILL) };
    let _ = t.child.wait_for(Duration::from_secs(5));
    // The device goes when the provider, which holds it too, notices and exits.
    let gone = Instant::now() + Duration::from_secs(10);
    while ip_json(&p.cli, &["link", "show"]).iter().any(|l| l["ifname"] == "nwtun0") {
        assert!(Instant::now() < gone, "the TUN device outlived its host by 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = p.cli.command(NW).args(["tunnel", "status", "--json"]).output().expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains("resolv.conf"), "{status}");
    // The uplink's resolver knows only *.test: it is asked, and says there is no such name.
    let answer = resolve(&["k2.corp.example".to_owned()]);
    let asked: Vec<String> = outside.seen().into_iter().map(|q| q.name).collect();
    assert!(
        asked.iter().any(|n| n.contains("k2.corp.example"))
            && !asked.iter().any(|n| n.contains("k1.corp.example")),
        "after the host was killed, matched names go to the uplink (and not before): {answer} {asked:?}"
    );
    let mut resolved = resolved;
    assert!(resolved.running(), "systemd-resolved or its bus died during the test");
    // What the killed host left in the state directory goes with `nw tunnel down`, not with
    // the namespace: left there, a later namespace given the same inode would inherit it.
    // (`nw tunnel status` would not tell: it ignores a state file whose host is dead.)
    let inode = std::fs::metadata(format!("/run/netns/{}", p.cli.name()))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("the namespace's inode");
    let state = std::fs::read_dir("/run/nwkit/tunnel")
        .expect("/run/nwkit/tunnel")
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            d.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{inode}-")))
        })
        .unwrap_or_else(|| panic!("the killed host left no state (INODE-COOKIE) to take down"));
    let down = p.cli.command(NW).args(["tunnel", "down"]).output().expect("nw tunnel down");
    assert_eq!(down.status.code(), Some(0), "{}", String::from_utf8_lossy(&down.stdout));
    assert!(!state.exists(), "nw tunnel down left {}", state.display());
}

/// `nw tunnel down` removes the state directories of network namespaces that are gone: one
/// whose inode no namespace has, and one of a namespace that had this one's inode before it
/// (the kernel gives inodes again, never cookies); a live namespace's, and a directory that
/// names no namespace, stay.
#[test]
fn netns_tunnel_down_sweeps_the_state_of_namespaces_that_are_gone() {
    let p = pair();
    let scratch = nw_lab::Scratch::new("tunnel-states").expect("a scratch directory");
    let dir = scratch.path();
    let inode = |path: &str| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("a namespace"))
    };
    let (cli_ns, this_ns) =
        (inode(&format!("/run/netns/{}", p.cli.name())), inode("/proc/self/ns/net"));
    let gone = ["1-7".to_owned(), format!("{cli_ns}-{}", u64::MAX - 1)].map(|d| dir.join(d));
    let kept = [format!("{this_ns}-3"), "notes".to_owned()].map(|d| dir.join(d));
    for d in gone.iter().chain(&kept) {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("nwtun0.resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    }
    let down = p
        .cli
        .command(NW)
        .env("NW_TUNNEL_STATE_DIR", dir)
        .args(["tunnel", "down"])
        .output()
        .expect("nw tunnel down");
    let said = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(0), "{said}");
    assert!(said.contains("removed the state of 2 network namespaces that are gone"), "{said}");
    for d in &gone {
        assert!(!d.exists(), "{} was not swept", d.display());
    }
    for d in &kept {
        assert!(d.join("nwtun0.resolv.conf").exists(), "{} was swept", d.display());
    }
}

/// A host whose output nobody reads any more (`nw tunnel up | head -1`) keeps running and,
/// told to stop, stops in order with nothing left behind: it used to panic at its next line
/// ("failed printing to stdout: Broken pipe") and leave its routing table behind.
#[test]
fn netns_tunnel_a_host_whose_output_pipe_closed_still_stops_in_order() {
    use std::io::BufRead as _;
    let p = pair();
    let mut cmd = p.cli.command(NW);
    // /bin/true exits at once: the host restarts it, saying so, line after line.
    cmd.args(["tunnel", "up", "--provider", "/bin/true"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut host = p.cli.spawn(cmd).expect("start nw tunnel up");
    let mut out = std::io::BufReader::new(host.stdout().expect("stdout piped"));
    let mut first = String::new();
    out.read_line(&mut first).expect("a first line");
    assert!(first.contains("created"), "{first}");
    drop(out);
    // Restarts after 250, 500 and 1000 ms: lines written to the closed pipe.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(host.try_wait().expect("wait").is_none(), "the host ended with its output pipe");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(libc::pid_t::try_from(host.id()).expect("a pid"), libc::SIGTERM) };
    let status = host.wait_for(Duration::from_secs(20)).expect("nw tunnel up stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "an orderly stop, not a panic");
    let status = p.cli.command(NW).args(["tunnel", "status", "--json"]).output().expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["leftovers"], json!([]), "{status}");
}
