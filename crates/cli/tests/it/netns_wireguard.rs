//! `nw tunnel up wg0.conf` against Debian's wireguard-go (with `wg` from wireguard-tools) in
//! the server namespace: handshakes both ways round, pings and bulk TCP both ways checked byte
//! for byte, the figures `nw tunnel status` shows, and an orderly stop that leaves nothing.

use std::time::Duration;

use nw_lab::{Child, Lab, Namespace, Pair, addr};
use nw_wireguard::SecretKey;
use serde_json::{Value, json};

use crate::support::{Dir, Events, NW};

fn pair() -> Pair {
    Lab::new().and_then(|lab| lab.pair()).unwrap_or_else(|e| panic!("lab setup failed: {e}"))
}

/// wireguard-go as `wgs` in `ns`, listening on 51820, with `peer` allowed 10.7.0.2 and fd07::2.
struct Server {
    _daemon: Child,
    key: SecretKey,
}

/// wireguard-go serving in `p`'s server namespace, and a client configuration for it (which
/// initiates) written as `DIR/NAME.conf`: its path.
fn served(p: &Pair, dir: &Dir, name: &str) -> (Server, String) {
    let (ours, psk) = (SecretKey::generate(), SecretKey::generate());
    let server = wireguard_go(&p.srv, dir, &ours, &psk, None);
    let conf = dir.path(&format!("{name}.conf"));
    std::fs::write(&conf, client_config(&ours, &server.key, &psk, true)).unwrap();
    (server, conf)
}

/// `nw ARGS` in `ns` with saved configurations kept in `store`.
fn with_store(ns: &Namespace, store: &str, args: &[&str]) -> std::process::Command {
    let mut c = ns.command(NW);
    c.env("NW_TUNNEL_CONFIG_DIR", store).args(args);
    c
}

fn wireguard_go(
    ns: &Namespace,
    dir: &Dir,
    peer: &SecretKey,
    psk: &SecretKey,
    peer_endpoint: Option<&str>,
) -> Server {
    let mut cmd = ns.command("wireguard-go");
    // Debian's kernel has WireGuard; wireguard-go runs anyway only when told to.
    cmd.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1").args(["-f", "wgs"]);
    let daemon = ns.spawn(cmd).unwrap_or_else(|e| {
        panic!("cannot start wireguard-go ({e}); apt-get install wireguard-go wireguard-tools")
    });
    let key = SecretKey::generate();
    let key_file = dir.path("srv.key");
    let psk_file = dir.path("psk");
    std::fs::write(&key_file, key.to_string()).unwrap();
    std::fs::write(&psk_file, psk.to_string()).unwrap();
    let peer_public = peer.public_key().unwrap().to_string();
    let mut set = vec![
        "wg",
        "set",
        "wgs",
        "private-key",
        &key_file,
        "listen-port",
        "51820",
        "peer",
        &peer_public,
        "preshared-key",
        &psk_file,
        "allowed-ips",
        "10.7.0.2/32,fd07::2/128",
    ];
    if let Some(e) = peer_endpoint {
        set.extend_from_slice(&["endpoint", e]);
    }
    // The daemon makes its device and control socket a moment after it starts (once more
    // than 5 s on a loaded machine: a benchmark's smoke run failed waiting that long).
    let mut last = String::new();
    for _ in 0..300 {
        match ns.run(&set) {
            Ok(_) => {
                last.clear();
                break;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last.is_empty(), "wg set: {last}");
    ns.ip(["addr", "add", "10.7.0.1/24", "dev", "wgs"]).unwrap();
    ns.ip(["addr", "add", "fd07::1/64", "dev", "wgs", "nodad"]).unwrap();
    ns.ip(["link", "set", "wgs", "mtu", "1420", "up"]).unwrap();
    Server { _daemon: daemon, key }
}

fn client_config(key: &SecretKey, server: &SecretKey, psk: &SecretKey, endpoint: bool) -> String {
    let mut text = format!(
        "[Interface]\nPrivateKey = {key}\nAddress = 10.7.0.2/24, fd07::2/64\nListenPort = 51821\n\n[Peer]\nPublicKey = {}\nPresharedKey = {psk}\nAllowedIPs = 10.7.0.0/24, fd07::/64\n",
        server.public_key().unwrap()
    );
    if endpoint {
        text.push_str(&format!("Endpoint = {}:51820\n", addr::SRV_V4));
    }
    text
}

fn up(ns: &Namespace, config: &str) -> Events {
    let mut cmd = ns.command(NW);
    cmd.args(["tunnel", "up", "--json", config]);
    Events::spawn(ns, cmd)
}

/// Sends `bytes` of a known pattern with Python from `from` to `to` (listening on 10.7.0.x
/// port 5001) and returns what the receiver counted and hashed, and what the sender hashed.
fn bulk(from: &Namespace, to: &Namespace, to_ip: &str, bytes: u64) -> (String, String) {
    let listen = format!(
        "import socket,hashlib\ns=socket.socket(socket.AF_INET6 if ':' in '{to_ip}' else socket.AF_INET)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{to_ip}',5001));s.listen(1)\nc,_=s.accept();h=hashlib.sha256();n=0\nwhile True:\n  b=c.recv(1<<16)\n  if not b: break\n  h.update(b);n+=len(b)\nprint(n,h.hexdigest())"
    );
    let send = format!(
        "import socket,hashlib,time\nfor i in range(100):\n  try:\n    c=socket.create_connection(('{to_ip}',5001));break\n  except OSError: time.sleep(0.05)\nblock=bytes(range(256))*256;h=hashlib.sha256();n=0\nwhile n<{bytes}:\n  b=block[:min(len(block),{bytes}-n)];c.sendall(b);h.update(b);n+=len(b)\nc.close();print(n,h.hexdigest())"
    );
    let mut cmd = to.command("python3");
    cmd.args(["-c", &listen]).stdout(std::process::Stdio::piped());
    let mut receiver = to.spawn(cmd).unwrap();
    let sent = from.run(["python3", "-c", &send]).unwrap_or_else(|e| panic!("sender: {e}"));
    receiver.wait_for(Duration::from_secs(60)).expect("the receiver finishes");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut receiver.stdout().unwrap(), &mut got).unwrap();
    (sent.trim().to_owned(), got.trim().to_owned())
}

/// Our client initiates: the handshake completes, pings and 32 MB each way cross the tunnel
/// intact over IPv4 and IPv6, the figures reach `nw tunnel status`, and SIGTERM leaves nothing.
#[test]
fn netns_wireguard_carries_traffic_to_wireguard_go_both_ways() {
    let p = pair();
    let dir = Dir::new("wg-client");
    let (server, conf) = served(&p, &dir, "wg0");
    let mut t = up(&p.cli, &conf);
    let created = t.event("created");
    assert_eq!(created["interface"], "wg0", "named after the file");
    let hs = t.wait(Duration::from_secs(10), |v| v["data"]["event"] == "handshake");
    assert_eq!(hs["data"]["endpoint"], format!("{}:51820", addr::SRV_V4), "{hs}");

    let ping = p.cli.run(["ping", "-n", "-c", "20", "-i", "0.05", "-W", "2", "10.7.0.1"]).unwrap();
    assert!(ping.contains("20 received"), "{ping}");
    let ping6 = p.cli.run(["ping", "-6", "-n", "-c", "5", "-i", "0.05", "-W", "2", "fd07::1"]);
    assert!(ping6.as_ref().is_ok_and(|o| o.contains("5 received")), "{ping6:?}");

    let size = 32 << 20;
    let (sent, got) = bulk(&p.cli, &p.srv, "10.7.0.1", size);
    assert_eq!(sent, got, "client to server over IPv4");
    assert!(sent.starts_with(&size.to_string()), "{sent}");
    let (sent, got) = bulk(&p.srv, &p.cli, "fd07::2", size);
    assert_eq!(sent, got, "server to client over IPv6");

    let show = p.srv.run(["wg", "show", "wgs", "transfer"]).unwrap();
    let rx: u64 = show.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(rx > size, "wireguard-go received {rx} bytes: {show}");

    // The underlying link goes down and comes back: the tunnel carries on by itself.
    p.cli.set_link("eth0", false).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    p.cli.set_link("eth0", true).unwrap();
    let after = p.cli.run(["ping", "-n", "-c", "3", "-w", "15", "10.7.0.1"]);
    assert!(
        after.as_ref().is_ok_and(|o| o.contains("3 received")),
        "after link down/up: {after:?}"
    );

    // The provider's figures reach the status within a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let status = p.cli.command(NW).args(["tunnel", "status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let peer = &status["tunnels"][0]["provider_status"]["peers"][0];
    assert_eq!(peer["public_key"], server.key.public_key().unwrap().to_string(), "{status}");
    assert!(peer["tx_bytes"].as_u64().unwrap_or(0) > size, "{status}");
    assert!(peer["rx_bytes"].as_u64().unwrap_or(0) > size, "{status}");
    assert!(peer["last_handshake_unix"].as_u64().is_some(), "{status}");

    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
    let stopped = t.event("stopped");
    assert_eq!(stopped["leftovers"], serde_json::json!([]), "{stopped}");
    let links = p.cli.ip(["link", "show"]).unwrap();
    assert!(!links.contains("wg0"), "the device is left: {links}");
}

/// wireguard-go initiates (our configuration has no Endpoint, only a ListenPort): our side
/// answers as the responder and pings flow from the server.
#[test]
fn netns_wireguard_answers_a_handshake_wireguard_go_starts() {
    let p = pair();
    let dir = Dir::new("wg-server");
    let (ours, psk) = (SecretKey::generate(), SecretKey::generate());
    let endpoint = format!("{}:51821", addr::CLI_V4);
    let server = wireguard_go(&p.srv, &dir, &ours, &psk, Some(&endpoint));
    let conf = dir.path("wgr.conf");
    std::fs::write(&conf, client_config(&ours, &server.key, &psk, false)).unwrap();
    let mut t = up(&p.cli, &conf);
    t.event("started");
    let ping = p.srv.run(["ping", "-n", "-c", "10", "-i", "0.1", "-W", "3", "10.7.0.2"]).unwrap();
    assert!(ping.contains("10 received"), "{ping}");
    let hs = t.wait(Duration::from_secs(5), |v| v["data"]["event"] == "handshake");
    assert_eq!(hs["data"]["endpoint"], format!("{}:51820", addr::SRV_V4), "{hs}");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
}

/// A wrong server key: the handshake never completes, and after three unanswered attempts
/// (about 10 s) the host says so, naming the likely causes. Files nw cannot use are refused with the
/// line at fault and exit 2, before anything is created.
#[test]
fn netns_wireguard_says_when_no_handshake_comes_and_refuses_bad_files() {
    let p = pair();
    let dir = Dir::new("wg-wrong");
    let (ours, psk) = (SecretKey::generate(), SecretKey::generate());
    let _server = wireguard_go(&p.srv, &dir, &ours, &psk, None);
    let conf = dir.path("wg1.conf");
    std::fs::write(&conf, client_config(&ours, &SecretKey::generate(), &psk, true)).unwrap();
    let mut t = up(&p.cli, &conf);
    t.event("started");
    let warned = t.wait(Duration::from_secs(25), |v| v["data"]["event"] == "no_handshake");
    assert_eq!(warned["data"]["attempts"], 3, "{warned}");
    assert_eq!(warned["data"]["gave_up"], false, "{warned}");
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);

    let bad = dir.path("bad.conf");
    std::fs::write(&bad, "[Interface]\nPrivateKey = not-a-key\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["/dev/zero"], "is not a regular file"),
        (&[&bad], "line 2: PrivateKey is not base64"),
        (&[&conf, "--options", "{}"], "cannot be used with"),
        (&[&dir.path("missing.conf")], "cannot read it"),
    ];
    for (args, want) in cases {
        let out = p.cli.command(NW).args(["tunnel", "up"]).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let links = p.cli.ip(["link", "show"]).unwrap();
    assert!(!links.contains("wg1") && !links.contains("bad"), "{links}");
}

/// A saved configuration: `nw tunnel save` checks the file, `list` shows it and then that it
/// runs, `up NAME` starts it with its kill switch, and `remove` while it runs stops it with
/// `configuration_removed` and nothing left, the kill switch included.
#[test]
fn netns_wireguard_saved_configuration_runs_and_stops_when_removed() {
    let p = pair();
    let dir = Dir::new("wg-saved");
    let (_server, conf) = served(&p, &dir, "wgs0");
    let store = dir.path("store");
    let nw = |args: &[&str]| with_store(&p.cli, &store, args);
    let saved = nw(&["tunnel", "save", "office", &conf, "--kill-switch"]).output().unwrap();
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let bad = nw(&["tunnel", "save", "bad", &dir.path("missing.conf")]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "a file that cannot be read is not saved");

    let mut cmd = nw(&["tunnel", "up", "--json", "office"]);
    cmd.stderr(std::process::Stdio::inherit());
    let mut t = Events::spawn(&p.cli, cmd);
    t.wait(Duration::from_secs(10), |v| v["data"]["event"] == "handshake");
    let listed = nw(&["tunnel", "list", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let office = &listed["configurations"][0];
    assert_eq!(office["name"], "office", "{listed}");
    assert_eq!(office["running"]["interface"], "wgs0", "{listed}");
    assert_eq!(office["configuration"]["kill_switch"], true, "{listed}");
    let tables = p.cli.run(["nft", "list", "tables"]).unwrap();
    assert!(tables.contains("nwkit_tunnel_wgs0"), "the saved kill switch is on: {tables}");

    let removed = nw(&["tunnel", "remove", "office"]).output().unwrap();
    assert!(removed.status.success());
    let stopped = t.wait(Duration::from_secs(10), |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "configuration_removed", "{stopped}");
    assert_eq!(stopped["leftovers"], serde_json::json!([]), "{stopped}");
    assert_eq!(t.child.wait_for(Duration::from_secs(10)).ok().and_then(|s| s.code()), Some(0));
    let tables = p.cli.run(["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("nwkit_tunnel"), "the kill switch is removed: {tables}");
}

/// On-demand rules: a configuration that connects only on Wi-Fi waits on the lab's veth (an
/// "other" interface) and stops cleanly while waiting (`nw tunnel down NAME`); one that connects on "other" runs, stops
/// with `no_network_available` when the link goes down, waits, and comes back by itself when
/// the path does.
#[test]
fn netns_wireguard_on_demand_follows_the_path() {
    let p = pair();
    let dir = Dir::new("wg-demand");
    let (_server, conf) = served(&p, &dir, "wgd0");
    let store = dir.path("store");
    let nw = |args: &[&str]| with_store(&p.cli, &store, args);
    for (name, rule) in [("wifi-only", "connect=wifi"), ("any", "connect=other")] {
        let out = nw(&["tunnel", "save", name, &conf, "--on-demand", rule]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let mut t = Events::spawn(&p.cli, nw(&["tunnel", "up", "--json", "wifi-only"]));
    let waiting = t.event("on_demand");
    assert_eq!(
        (waiting["state"].as_str(), waiting["primary"].as_str()),
        (Some("waiting"), Some("other"))
    );
    std::thread::sleep(Duration::from_secs(1));
    t.drain();
    assert!(t.seen.iter().all(|v| v["event"] != "created"), "it must not run: {:#?}", t.seen);
    // Waiting shows where running tunnels do, and `nw tunnel down` stops it.
    let status = nw(&["tunnel", "status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let host = &status["tunnels"][0];
    assert_eq!((&host["state"], &host["configuration"]), (&json!("waiting"), &json!("wifi-only")));
    assert_eq!(host["pid"], t.child.id(), "{status}");
    let listed = nw(&["tunnel", "list", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
    let running = listed["configurations"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "wifi-only"))
        .map(|c| c["running"]["state"].clone());
    assert_eq!(running, Some(json!("waiting")), "{listed}");
    // By its configuration's name: it has no interface yet.
    let down = nw(&["tunnel", "down", "any"]).output().unwrap();
    assert_eq!(down.status.code(), Some(2), "nothing runs 'any' yet");
    let down = nw(&["tunnel", "down", "wifi-only"]).output().unwrap();
    let said = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success() && said.contains("waiting on demand"), "{said}");
    let ended = t.child.wait_for(Duration::from_secs(10)).ok().and_then(|s| s.code());
    assert_eq!(ended, Some(0), "{:#?}", t.seen);
    let status = nw(&["tunnel", "status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    assert_eq!(status["tunnels"], json!([]), "nothing is left listed: {status}");

    let mut t = Events::spawn(&p.cli, nw(&["tunnel", "up", "--json", "any"]));
    t.wait(Duration::from_secs(10), |v| v["data"]["event"] == "handshake");
    // Once it runs, its interface names it, and the waiting entry is gone.
    let status = nw(&["tunnel", "status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let interfaces: Vec<&Value> =
        status["tunnels"].as_array().into_iter().flatten().map(|h| &h["interface"]).collect();
    assert_eq!(interfaces, [&json!("wgd0")], "{status}");
    p.cli.set_link("eth0", false).unwrap();
    let stopped = t.wait(Duration::from_secs(10), |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "no_network_available", "{stopped}");
    assert_eq!(stopped["leftovers"], serde_json::json!([]), "{stopped}");
    t.event("on_demand");
    p.cli.set_link("eth0", true).unwrap();
    p.cli.ip(["route", "replace", "default", "via", &addr::SRV_V4.to_string()]).unwrap();
    t.nth(2, Duration::from_secs(15), |v| v["event"] == "created");
    t.nth(2, Duration::from_secs(15), |v| v["data"]["event"] == "handshake");
    let ping = p.cli.run(["ping", "-n", "-c", "3", "-w", "10", "10.7.0.1"]).unwrap();
    assert!(ping.contains("3 received"), "{ping}");
    assert_eq!(t.stop(), Some(0), "{:#?}", t.seen);
    let created = t.seen.iter().filter(|v| v["event"] == "created").count();
    assert_eq!(created, 2, "ran, stopped for the path, ran again: {:#?}", t.seen);
}

/// What an Ubuntu or Fedora user has: systemd-resolved as the resolver (Debian's own, on a bus
/// of the test's) and a wg-quick file with `DNS = 10.7.0.1, corp.example`. The WireGuard
/// provider's DNS becomes the tunnel link's in resolved — the server, `corp.example` searched,
/// `~.` and the link the default route — so a name resolved through the C library is answered
/// by the resolver across the tunnel and the uplink's resolver is never asked.
#[test]
fn netns_wireguard_dns_goes_to_systemd_resolved_and_every_name_through_the_tunnel() {
    use nw_lab::dns::{DnsServer, Script};
    let p = pair();
    let dir = Dir::new("wg-resolved");
    let (_server, conf) = served(&p, &dir, "wgr0");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replacen(
        "ListenPort = 51821\n",
        "ListenPort = 51821\nDNS = 10.7.0.1, corp.example\n",
        1,
    );
    std::fs::write(&conf, text).unwrap();
    let across = DnsServer::start(
        &p.srv,
        "10.7.0.1:53".parse().unwrap(),
        Script::wildcard(&["10.53.0.9".parse().unwrap()], &[]),
    )
    .unwrap_or_else(|e| panic!("the resolver across the tunnel: {e}"));
    let uplink = DnsServer::start(
        &p.srv,
        "198.51.100.2:53".parse().unwrap(),
        Script::wildcard(&["192.0.2.77".parse().unwrap()], &[]),
    )
    .unwrap_or_else(|e| panic!("the uplink's resolver: {e}"));
    let resolved = nw_lab::resolved::Resolved::start(&p.cli)
        .unwrap_or_else(|e| panic!("systemd-resolved in the lab: {e}"));
    resolved
        .set_uplink(&p.cli, &p.cli_dev, "198.51.100.2".parse().unwrap())
        .unwrap_or_else(|e| panic!("the uplink's DNS in resolved: {e}"));

    let mut cmd = p.cli.command(NW);
    cmd.args(["tunnel", "up", "--json", &conf])
        .env("DBUS_SYSTEM_BUS_ADDRESS", resolved.bus_address());
    let mut t = Events::spawn(&p.cli, cmd);
    let applied = t.event("applied");
    assert_eq!(
        applied["kernel"]["resolved"],
        json!({"servers": ["10.7.0.1"], "domains": ["corp.example", "~."], "default_route": true}),
        "{applied}"
    );
    t.wait(Duration::from_secs(10), |v| v["data"]["event"] == "handshake");
    let out = p.cli.run(["python3", "-c", "import socket; print(socket.gethostbyname('w1.test'))"]);
    let answer = out.unwrap_or_else(|e| panic!("resolving w1.test: {e}"));
    assert_eq!(answer.trim(), "10.53.0.9", "answered by the resolver across the tunnel");
    assert!(across.seen().iter().any(|q| q.name.contains("w1.test")), "{:?}", across.seen());
    assert!(uplink.seen().is_empty(), "the uplink's resolver was asked: {:?}", uplink.seen());
    assert_eq!(t.stop(), Some(0), "events: {:#?}", t.seen);
}
