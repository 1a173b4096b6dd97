//! Benchmark: a WireGuard tunnel between two lab namespaces, Debian's wireguard-go in the server
//! namespace, and in the client namespace either `nw tunnel up wg0.conf` (our provider) or a
//! second wireguard-go with the same keys and addresses — the same veth, alternating runs. Each
//! run sends a bounded transfer with iperf3 (TCP) up and down, and counts the CPU time of the
//! client's tunnel processes (for us the host and the provider; for the peer wireguard-go).
//! Also the round-trip time of pings through each tunnel and over the bare veth.
//!
//! Prints the medians: throughput (Mbit/s), client CPU seconds per GB, and our ratio to
//! wireguard-go. Needs root, iproute2, wireguard-go, wireguard-tools and iperf3.
//!
//! Run: `cargo bench -p nw --bench wireguard` (1 GiB each way, 3 runs of each). With
//! `NW_BENCH_SMOKE=1`: 32 MiB, one run of each.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    reason = "benchmark program"
)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nw_lab::stats::median;
use nw_lab::{Child, Lab, Namespace, addr};
use nw_wireguard::SecretKey;
use serde_json::Value;

const NW: &str = env!("CARGO_BIN_EXE_nw");

/// One run: tunnel, up Mbit/s, up CPU s/GB, down Mbit/s, down CPU s/GB, rtt ms.
type Row = (&'static str, f64, f64, f64, f64, f64);

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn wg_go(ns: &Namespace, name: &str) -> Child {
    let mut cmd = ns.command("wireguard-go");
    cmd.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1").args(["-f", name]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = ns.spawn(cmd).expect("wireguard-go (apt-get install wireguard-go)");
    // Generous: it once took more than 5 s on a loaded CI machine (a smoke run failed).
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(30) {
        if ns.run(["wg", "show", name]).is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wireguard-go exited ({status}) before making {name}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("wireguard-go did not make {name} within 30 s");
}

fn wg_set(ns: &Namespace, args: &[&str]) {
    let mut argv = vec!["wg", "set"];
    argv.extend_from_slice(args);
    ns.run(&argv).unwrap_or_else(|e| panic!("wg set {args:?}: {e}"));
}

/// A client tunnel, up: the processes whose CPU time counts.
struct Client {
    guard: Child,
    pids: Vec<u32>,
}

fn ours(ns: &Namespace, conf: &str) -> Client {
    let mut cmd = ns.command(NW);
    cmd.args(["tunnel", "up", "--json", conf]).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut guard = ns.spawn(cmd).expect("nw tunnel up");
    let out = BufReader::new(guard.stdout().unwrap());
    let mut pids = vec![guard.id()];
    let mut lines = out.lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "created" {
            pids.push(v["pid"].as_u64().unwrap() as u32);
        }
        if v["data"]["event"] == "handshake" {
            // Keep draining stdout so the host never blocks on it.
            std::thread::spawn(move || lines.for_each(drop));
            return Client { guard, pids };
        }
    }
    panic!("our tunnel did not complete a handshake");
}

fn theirs(ns: &Namespace, dir: &str, server: &SecretKey) -> Client {
    let guard = wg_go(ns, "wgc");
    let pid = guard.id();
    wg_set(
        ns,
        &[
            "wgc",
            "private-key",
            &format!("{dir}/cli.key"),
            "listen-port",
            "51821",
            "peer",
            &server.public_key().unwrap().to_string(),
            "allowed-ips",
            "10.7.0.0/24",
            "endpoint",
            &format!("{}:51820", addr::SRV_V4),
        ],
    );
    ns.ip(["addr", "add", "10.7.0.2/24", "dev", "wgc"]).unwrap();
    ns.ip(["link", "set", "wgc", "mtu", "1420", "up"]).unwrap();
    Client { guard, pids: vec![pid] }
}

/// iperf3 through the tunnel: Mbit/s and the clients' CPU seconds per GB.
fn transfer(ns: &Namespace, client: &Client, bytes: u64, reverse: bool) -> (f64, f64) {
    let before: f64 = client.pids.iter().map(|&p| cpu_seconds(p)).sum();
    let n = format!("{bytes}");
    let mut argv = vec!["iperf3", "-c", "10.7.0.1", "-n", &n, "-J"];
    if reverse {
        argv.push("-R");
    }
    let out = ns.run(&argv).unwrap_or_else(|e| panic!("iperf3: {e}"));
    let after: f64 = client.pids.iter().map(|&p| cpu_seconds(p)).sum();
    let v: Value = serde_json::from_str(&out).unwrap();
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap();
    let moved = v["end"]["sum_received"]["bytes"].as_f64().unwrap();
    (bps / 1e6, (after - before) / (moved / 1e9))
}

/// The median round-trip time, in ms, of 50 pings.
fn rtt(ns: &Namespace, to: &str) -> f64 {
    let out = ns.run(["ping", "-n", "-q", "-c", "50", "-i", "0.01", to]).unwrap();
    // "rtt min/avg/max/mdev = 0.047/0.062/0.125/0.013 ms": the average.
    out.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (bytes, runs) = if smoke { (32u64 << 20, 1) } else { (1u64 << 30, 3) };
    let lab = Lab::new().expect("the lab (root and iproute2)");
    let p = lab.pair().expect("two namespaces");
    let dir = std::env::temp_dir().join(format!("nw-bench-wg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let (cli_key, srv_key) = (SecretKey::generate(), SecretKey::generate());
    std::fs::write(dir.join("cli.key"), cli_key.to_string()).unwrap();
    std::fs::write(dir.join("srv.key"), srv_key.to_string()).unwrap();
    let conf = dir.join("wg0.conf");
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {cli_key}\nAddress = 10.7.0.2/24\nListenPort = 51821\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.7.0.0/24\nEndpoint = {}:51820\n",
            srv_key.public_key().unwrap(),
            addr::SRV_V4
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let _server = wg_go(&p.srv, "wgs");
    wg_set(
        &p.srv,
        &[
            "wgs",
            "private-key",
            &format!("{d}/srv.key"),
            "listen-port",
            "51820",
            "peer",
            &cli_key.public_key().unwrap().to_string(),
            "allowed-ips",
            "10.7.0.2/32",
        ],
    );
    p.srv.ip(["addr", "add", "10.7.0.1/24", "dev", "wgs"]).unwrap();
    p.srv.ip(["link", "set", "wgs", "mtu", "1420", "up"]).unwrap();
    let mut iperf = p.srv.command("iperf3");
    iperf.args(["-s", "-B", "10.7.0.1"]).stdout(Stdio::null()).stderr(Stdio::null());
    let _iperf = p.srv.spawn(iperf).expect("iperf3 (apt-get install iperf3)");

    let bare = rtt(&p.cli, &addr::SRV_V4.to_string());
    let mut rows: Vec<Row> = Vec::new();
    for run in 0..runs * 2 {
        let mine = run % 2 == 0;
        let mut client = if mine {
            ours(&p.cli, &conf.display().to_string())
        } else {
            theirs(&p.cli, &d, &srv_key)
        };
        // The server learns the client's endpoint from its handshake; give iperf3 a moment.
        std::thread::sleep(Duration::from_millis(300));
        let (up, up_cpu) = transfer(&p.cli, &client, bytes, false);
        let (down, down_cpu) = transfer(&p.cli, &client, bytes, true);
        let ms = rtt(&p.cli, "10.7.0.1");
        let name = if mine { "nw (our provider)" } else { "wireguard-go" };
        eprintln!(
            "run {}: {name}: up {up:.0} Mbit/s ({up_cpu:.2} CPU s/GB), down {down:.0} Mbit/s ({down_cpu:.2} CPU s/GB), rtt {ms:.3} ms",
            run + 1
        );
        rows.push((name, up, up_cpu, down, down_cpu, ms));
        if mine {
            // SAFETY: kill(2) on our own child: SIGTERM asks for an orderly stop.
            unsafe { libc::kill(client.guard.id() as libc::pid_t, libc::SIGTERM) };
            let _ = client.guard.wait_for(Duration::from_secs(15));
        } else {
            drop(client);
            let _ = p.cli.ip(["link", "del", "wgc"]);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "wireguard: {} MiB each way, {runs} run(s) of each, medians; client CPU is the client namespace's tunnel processes",
        bytes >> 20
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "tunnel", "up Mbit/s", "CPU s/GB", "down Mbit/s", "CPU s/GB", "rtt ms"
    );
    let stat = |name: &str, f: fn(&Row) -> f64| {
        median(&rows.iter().filter(|r| r.0 == name).map(f).collect::<Vec<_>>())
    };
    let mut medians = Vec::new();
    for name in ["nw (our provider)", "wireguard-go"] {
        let m = [
            stat(name, |r| r.1),
            stat(name, |r| r.2),
            stat(name, |r| r.3),
            stat(name, |r| r.4),
            stat(name, |r| r.5),
        ];
        println!(
            "{name:<20} {:>10.0} {:>10.2} {:>10.0} {:>10.2} {:>9.3}",
            m[0], m[1], m[2], m[3], m[4]
        );
        medians.push(m);
    }
    println!("{:<20} {:>10} {:>10} {:>10} {:>10} {:>9.3}", "bare veth", "", "", "", "", bare);
    let (a, b) = (medians[0], medians[1]);
    println!(
        "ratio nw/wireguard-go: throughput up {:.2}x, down {:.2}x; CPU per GB up {:.2}x, down {:.2}x; added rtt {:.3} ms vs {:.3} ms",
        a[0] / b[0],
        a[2] / b[2],
        a[1] / b[1],
        a[3] / b[3],
        a[4] - bare,
        b[4] - bare
    );
}
