//! `nw tunnel up` for real: a TUN device, addresses, routes and rules in a lab namespace, with
//! a provider written in Python (the contract is language-neutral) that answers pings carried
//! by the tunnel. What the host says it applied is checked against iproute2's own reading.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nw_lab::{Lab, Namespace, Pair};
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

/// A provider killed with SIGKILL ends the tunnel as `provider_failed`, and the teardown
/// leaves nothing; one that breaks the contract, asks for a bad route, or never starts gets
/// the same clean stop with a reason that says so.
#[test]
fn netns_tunnel_providers_that_die_misbehave_or_hang_get_a_clean_stop() {
    let p = pair();
    let options = json!({"settings": settings(&["10.99.5.0/24"])});
    let mut t = Tunnel::echo(&p.cli, &options, &[]);
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
}

/// The Rust SDK for real: `crates/tunnel/examples/echo_provider.rs`, a provider of a few dozen
/// lines, applies its settings and answers pings through the tunnel, and stops in order.
#[test]
fn netns_tunnel_a_provider_on_the_rust_sdk_carries_pings_and_stops_in_order() {
    let example = std::path::Path::new(NW).with_file_name("examples").join("echo_provider");
    assert!(
        example.exists(),
        "{} is missing: build it with `cargo build -p nw-tunnel --example echo_provider` (scripts/test does)",
        example.display()
    );
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
